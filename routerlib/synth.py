"""Deterministic, realistic synthetic Week-2 router rows: the embedded default input.

Distributions follow the original team's statistics of its full train split (6,962 rows; the
figures are the constants below, copied from that split's metrics file): first tool,
route length and template, difficulty mix, metrics key shapes and value types, top tags. Queries
are composed from templates and per-topic vocabularies with numeric details, and a query is never
repeated within one file. Every row passes ``schema.validate_row``; the same (n, seed) always gives
the same rows, so the written file is byte-identical across runs and machines.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routerlib.atomic import atomic_writer
from routerlib.config import run_default
from routerlib.errors import InputError
from routerlib.runfolder import SYNTHETIC_ROWS_FILE

#: Rows and seed of the embedded input: RunConfig's defaults (``synth_rows``, ``synth_seed``).
DEFAULT_ROWS: int = run_default("synth_rows")
DEFAULT_SEED: int = run_default("synth_seed")
#: File name of the embedded rows prepare writes when no --input is given.
EMBEDDED_FILE = SYNTHETIC_ROWS_FILE

# --------------------------------------------------------------------------------------------
# Distributions (counts from router_eval_metrics.json, dataset.train)
# --------------------------------------------------------------------------------------------

#: Route templates with their joint weight. Route lengths 2/3/4/5 = 5/6674/280/3 and first tool
#: /math in 116 of 6962 rows; the tool orders are those the real rows show.
ROUTE_TEMPLATES: tuple[tuple[tuple[str, ...], float], ...] = (
    (("/general-search", "/math", "/code"), 6674 * (1 - 116 / 6962)),
    (("/math", "/code", "/general-search"), 6674 * (116 / 6962) * 0.75),
    (("/math", "/general-search", "/code"), 6674 * (116 / 6962) * 0.25),
    (("/general-search", "/math", "/code", "/math"), 280 * (1 - 116 / 6962)),
    (("/math", "/general-search", "/code", "/math"), 280 * (116 / 6962)),
    (("/general-search", "/code"), 4.0),
    (("/math", "/code"), 1.0),
    (("/general-search", "/math", "/code", "/math", "/code"), 3.0),
)

DIFFICULTY_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("advanced", 4584),
    ("intermediate", 1570),
    ("introductory", 808),
)

#: Metrics key shapes (sorted keys) and their counts; the last one is from the validation split.
METRICS_SHAPES: tuple[tuple[tuple[str, ...], int], ...] = (
    (("primary", "secondary"), 6271),
    (("primary", "primary_guidance", "secondary", "secondary_guidance"), 548),
    (("primary", "primary_computation", "secondary", "secondary_computation"), 72),
    (("diagnostic", "primary", "secondary"), 24),
    (("diagnostics", "primary", "secondary"), 4),
    (("guidance", "primary", "secondary"), 14),
    (("computation_guidance", "primary", "secondary"), 24),
    (
        (
            "diagnostic",
            "diagnostic_guidance",
            "primary",
            "primary_guidance",
            "secondary",
            "secondary_guidance",
        ),
        2,
    ),
    (("primary", "secondary", "tertiary"), 2),
    (("primary", "primary_description", "secondary", "secondary_description"), 1),
    (("primary", "primary_computation_guidance", "secondary", "secondary_computation_guidance"), 1),
)

#: Probability that an optional metrics value is a dict rather than a string (metrics_value_types).
DICT_VALUE_SHARE = {
    "guidance": 5 / 14,
    "computation_guidance": 16 / 24,
    "diagnostic": 4 / 26,
    "diagnostics": 0.0,
    "tertiary": 0.5,
}

PRIMARY_METRIC = "Define at least one domain-specific performance metric with formulas and acceptance thresholds."
SECONDARY_METRIC = (
    "Report runtime/memory usage and summarize failure cases discovered during evaluation."
)
SEARCH_MODES: tuple[tuple[str, int], ...] = (("both", 122), ("rag", 85), ("web", 78))
ROUTER_QA = "- [ ] router QA: consolidate tool outputs, verify citations, and approve the response."

# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topic:
    """One research area: tags (the first from the real top-tag lists), subjects, what the math
    and code agents do there, search terms, a domain metric and a validation check."""

    tags: tuple[str, ...]
    subjects: tuple[str, ...]
    derivations: tuple[str, ...]
    implementations: tuple[str, ...]
    search_terms: tuple[str, ...]
    metric: tuple[str, str]
    check: str


TOPICS: tuple[Topic, ...] = (
    Topic(
        ("bayesian-inference", "mcmc", "probabilistic-programming"),
        (
            "a hierarchical Bayesian logistic regression model",
            "a Bayesian change-point model",
            "a Gaussian process classifier with a Laplace approximation",
        ),
        (
            "the full conditional posteriors for a Gibbs sampler",
            "the Metropolis-Hastings acceptance ratio",
            "the Laplace approximation to the marginal likelihood",
        ),
        (
            "a Hamiltonian Monte Carlo sampler with dual-averaging step size adaptation",
            "a blocked Gibbs sampler with vectorized conditional updates",
        ),
        (
            "Bayesian hierarchical model Hamiltonian Monte Carlo convergence diagnostics",
            "Laplace approximation marginal likelihood Gaussian process classification",
        ),
        (
            "effective sample size per second",
            "ESS = N / (1 + 2 * sum_k rho_k) over chain autocorrelations",
        ),
        "the Gelman-Rubin R-hat statistic across four chains",
    ),
    Topic(
        ("constrained-optimization", "lagrangian-duality", "convex-optimization"),
        (
            "a quadratic program with box and equality constraints",
            "a portfolio allocation problem with a CVaR constraint",
            "a trajectory optimization problem with collision constraints",
        ),
        (
            "the KKT conditions and the Lagrangian dual",
            "the augmented Lagrangian updates and their convergence rate",
            "the barrier-method central path and its duality gap",
        ),
        (
            "a primal-dual interior-point solver with a Mehrotra predictor-corrector step",
            "an augmented Lagrangian method with warm-started inner solves",
        ),
        (
            "augmented Lagrangian method convergence nonconvex constraints",
            "interior point method KKT system sparse factorization",
        ),
        ("duality gap", "gap = f(x) - g(lambda, nu) at every outer iteration"),
        "a comparison of the primal solution against CVXPY to 1e-6",
    ),
    Topic(
        ("causal-inference", "do-calculus", "structural-causal-model"),
        (
            "a structural causal model with a hidden confounder",
            "an instrumental-variable estimator for a binary treatment",
            "a front-door adjustment in a mediated causal graph",
        ),
        (
            "the identification formula for P(Y | do(X)) using do-calculus rules",
            "the asymptotic variance of the doubly robust estimator",
            "the front-door adjustment formula from the graph's conditional independencies",
        ),
        (
            "a simulation of the SCM with observational and interventional sampling",
            "a doubly robust estimator with cross-fitting and gradient-boosted nuisance models",
        ),
        (
            "do-calculus identification front-door criterion estimation",
            "doubly robust estimation cross-fitting causal effect",
        ),
        (
            "absolute bias of the average treatment effect",
            "bias = |ATE_hat - ATE_true| averaged over 200 seeds",
        ),
        "a Kolmogorov-Smirnov test between simulated and analytical interventional distributions",
    ),
    Topic(
        ("variational-inference", "elbo", "bayesian-inference"),
        (
            "a Bayesian Gaussian mixture model",
            "a latent Dirichlet allocation topic model",
            "a variational autoencoder with a normalizing-flow posterior",
        ),
        (
            "the evidence lower bound and its coordinate-ascent updates",
            "the reparameterization gradient of the ELBO",
            "the closed-form KL divergence terms of the ELBO",
        ),
        (
            "stochastic variational inference with natural-gradient updates",
            "a reparameterized ELBO optimizer with control variates",
        ),
        (
            "stochastic variational inference natural gradient convergence",
            "normalizing flow variational posterior ELBO tightness",
        ),
        (
            "final ELBO on held-out data",
            "ELBO = E_q[log p(x, z)] - E_q[log q(z)] estimated with 1,000 samples",
        ),
        "a check that the ELBO is non-decreasing under coordinate ascent",
    ),
    Topic(
        ("reinforcement-learning", "policy-gradient", "control-theory"),
        (
            "a constrained Markov decision process for robotic manipulation",
            "an actor-critic agent on a continuous-control task",
            "an off-policy agent with importance-weighted returns",
        ),
        (
            "the policy gradient theorem with a state-dependent baseline",
            "the Lagrangian relaxation of the constrained return",
            "the bias and variance of the generalized advantage estimator",
        ),
        (
            "proximal policy optimization with a Lagrange-multiplier cost critic",
            "an actor-critic learner with generalized advantage estimation",
        ),
        (
            "constrained policy optimization Lagrangian PPO safety",
            "generalized advantage estimation variance reduction policy gradient",
        ),
        (
            "average episodic return",
            "mean return over the last 100 evaluation episodes with a 95% bootstrap interval",
        ),
        "a finite-difference check of the policy gradient on a two-state MDP",
    ),
    Topic(
        ("quantum-computing", "quantum-error-correction", "linear-algebra"),
        (
            "the three-qubit bit-flip code",
            "a variational quantum eigensolver for the H2 molecule",
            "the surface code under depolarizing noise",
        ),
        (
            "the stabilizer generators and syndrome table",
            "the parameter-shift rule for the energy gradient",
            "the logical error rate as a function of the physical error rate",
        ),
        (
            "a statevector simulator with syndrome extraction and correction",
            "a VQE loop with the parameter-shift gradient and a hardware-efficient ansatz",
        ),
        (
            "surface code threshold depolarizing noise decoder",
            "variational quantum eigensolver parameter shift rule barren plateaus",
        ),
        ("logical state fidelity", "F = |<psi_initial|psi_final>|^2 after correction"),
        "a comparison of the simulated ground-state energy with exact diagonalization",
    ),
    Topic(
        ("admm", "distributed-optimization", "convex-optimization"),
        (
            "a LASSO problem split across worker nodes",
            "total-variation image denoising",
            "a consensus logistic regression over partitioned data",
        ),
        (
            "the scaled-form ADMM updates and the primal and dual residuals",
            "the proximal operators of the L1 norm and the total-variation penalty",
            "the convergence rate of ADMM under strong convexity",
        ),
        (
            "consensus ADMM with adaptive penalty parameter balancing",
            "an ADMM solver with closed-form proximal steps and residual-based stopping",
        ),
        (
            "ADMM convergence rate adaptive penalty residual balancing",
            "consensus ADMM distributed lasso",
        ),
        ("primal residual norm", "r_k = ||x_k - z_k||_2 reported per iteration"),
        "a comparison of the ADMM solution with scikit-learn's coordinate-descent LASSO",
    ),
    Topic(
        ("representation-learning", "contrastive-learning", "self-supervised-learning"),
        (
            "a SimCLR-style contrastive objective",
            "a masked autoencoder on tabular data",
            "the InfoNCE bound on mutual information",
        ),
        (
            "the InfoNCE loss gradient and its temperature dependence",
            "the mutual-information lower bound implied by the contrastive loss",
            "the alignment and uniformity decomposition of the objective",
        ),
        (
            "a contrastive pretraining loop with a linear-probe evaluation",
            "a masked autoencoder with a configurable masking ratio",
        ),
        (
            "InfoNCE mutual information bound contrastive representation learning",
            "alignment uniformity hypersphere contrastive loss",
        ),
        ("linear-probe accuracy", "top-1 accuracy of a logistic regression on frozen features"),
        "a check that the InfoNCE estimate never exceeds log(batch size)",
    ),
    Topic(
        ("federated-learning", "differential-privacy", "distributed-optimization"),
        (
            "federated averaging on non-IID client data",
            "differentially private federated SGD",
            "a personalized federated learning objective",
        ),
        (
            "the convergence bound of FedAvg under client drift",
            "the privacy budget of DP-SGD with the moments accountant",
            "the bias introduced by partial client participation",
        ),
        (
            "a FedAvg simulator with Dirichlet-partitioned clients",
            "DP-SGD with per-example gradient clipping and Gaussian noise",
        ),
        (
            "federated averaging convergence non-iid client drift",
            "differentially private SGD moments accountant federated",
        ),
        ("global test accuracy", "accuracy of the aggregated model after 200 communication rounds"),
        "a check that the computed privacy budget epsilon stays below 8 at delta = 1e-5",
    ),
    Topic(
        ("information-theory", "rate-distortion", "entropy"),
        (
            "the rate-distortion function of a Gaussian source",
            "channel capacity of a binary symmetric channel",
            "an information bottleneck objective for a classifier",
        ),
        (
            "the Blahut-Arimoto iterations and their fixed point",
            "the reverse water-filling solution",
            "the information bottleneck Lagrangian and its stationary conditions",
        ),
        (
            "the Blahut-Arimoto algorithm with a convergence tolerance",
            "a variational information bottleneck trained on MNIST",
        ),
        (
            "Blahut-Arimoto rate distortion computation convergence",
            "variational information bottleneck deep learning",
        ),
        ("gap to the analytical rate-distortion curve", "max over D of |R_hat(D) - R(D)| in bits"),
        "a comparison of the computed curve with the closed-form Gaussian result",
    ),
    Topic(
        ("program-synthesis", "formal-verification", "type-theory"),
        (
            "a synthesizer for list-manipulating functions from input-output examples",
            "a bottom-up enumerative synthesizer with observational equivalence pruning",
            "a typed lambda-calculus interpreter with a soundness proof",
        ),
        (
            "the soundness of the pruning rule and a bound on the search space",
            "progress and preservation for the type system",
            "the completeness of enumeration up to a term size",
        ),
        (
            "an enumerative synthesizer with memoized observational equivalence",
            "a type checker and interpreter with property-based tests",
        ),
        (
            "enumerative program synthesis observational equivalence pruning",
            "type soundness progress preservation mechanized proof",
        ),
        ("synthesis success rate", "share of 60 benchmark tasks solved within 10 seconds"),
        "property-based tests that every synthesized program matches all examples",
    ),
    Topic(
        ("meta-learning", "few-shot-learning", "bilevel-optimization"),
        (
            "Model-Agnostic Meta-Learning on few-shot sinusoid regression",
            "a prototypical network for 5-way 1-shot classification",
            "implicit MAML with conjugate-gradient meta-gradients",
        ),
        (
            "the second-order meta-gradient including the Hessian term",
            "the implicit-function-theorem meta-gradient",
            "the first-order approximation error of FOMAML",
        ),
        ("MAML with Hessian-vector products", "implicit MAML with a conjugate-gradient solver"),
        (
            "model-agnostic meta-learning second-order Hessian-vector product",
            "implicit gradients meta-learning conjugate gradient",
        ),
        ("meta-test loss after adaptation", "mean MSE on 600 held-out tasks after 5 inner steps"),
        "a finite-difference check of the meta-gradient on a two-parameter model",
    ),
    Topic(
        ("matrix-calculus", "automatic-differentiation", "numerical-linear-algebra"),
        (
            "the gradient of the log-determinant of a kernel matrix",
            "backpropagation through a matrix square root",
            "the Jacobian of a batched eigen-decomposition",
        ),
        (
            "the matrix differential and the resulting gradient",
            "the adjoint equations for the Sylvester system",
            "the derivative of eigenvectors with degenerate eigenvalues",
        ),
        (
            "a custom autograd function with an analytic backward pass",
            "vector-Jacobian products checked against finite differences",
        ),
        (
            "matrix calculus log determinant gradient backpropagation",
            "differentiating eigendecomposition degenerate eigenvalues",
        ),
        ("relative gradient error", "||g_analytic - g_fd|| / ||g_fd|| over 50 random inputs"),
        "a finite-difference gradient check with step size 1e-6",
    ),
    Topic(
        ("spectral-analysis", "hessian", "deep-learning-theory"),
        (
            "the Hessian spectrum of a ResNet-18 loss landscape",
            "the spectral norm of convolutional layers",
            "the graph Laplacian of a k-nearest-neighbour graph",
        ),
        (
            "the Lanczos tridiagonalization and Ritz value bounds",
            "the power-iteration convergence rate",
            "the relation between the top Hessian eigenvalue and sharpness",
        ),
        (
            "the Lanczos algorithm with Hessian-vector products",
            "power iteration for layer spectral norms",
        ),
        (
            "Hessian eigenvalue spectrum Lanczos deep networks sharpness",
            "spectral normalization convolution power iteration",
        ),
        ("top Hessian eigenvalue", "lambda_max estimated by 100 Lanczos iterations"),
        "a comparison with dense eigendecomposition on a small model",
    ),
    Topic(
        ("deep-learning-theory", "neural-tangent-kernel", "generalization"),
        (
            "the neural tangent kernel of a two-layer ReLU network",
            "the double-descent curve of random-features regression",
            "a PAC-Bayes bound for a stochastic network",
        ),
        (
            "the infinite-width NTK in closed form",
            "the test risk of ridgeless random-features regression",
            "the PAC-Bayes-kl bound with a data-dependent prior",
        ),
        (
            "an empirical NTK computation compared with the analytical kernel",
            "random-features regression sweeping the width",
        ),
        (
            "neural tangent kernel infinite width convergence",
            "double descent random features ridgeless regression",
        ),
        ("kernel alignment error", "relative Frobenius error between empirical and analytical NTK"),
        "a check that the empirical kernel converges as the width grows",
    ),
    Topic(
        ("stochastic-calculus", "stochastic-differential-equations", "monte-carlo"),
        (
            "an Ornstein-Uhlenbeck process with mean reversion",
            "the Heston stochastic volatility model",
            "geometric Brownian motion under a change of measure",
        ),
        (
            "the transition density via Ito's lemma",
            "the Girsanov change of measure",
            "the strong and weak convergence orders of the Euler-Maruyama scheme",
        ),
        (
            "Euler-Maruyama and Milstein simulators with convergence plots",
            "a Monte Carlo pricer with antithetic variates",
        ),
        (
            "Euler Maruyama Milstein strong convergence order",
            "Girsanov theorem Monte Carlo variance reduction",
        ),
        ("strong error at the final time", "E|X_T - X_T^h| over 10,000 paths for each step size"),
        "a log-log regression of the error on the step size",
    ),
    Topic(
        ("bayesian-deep-learning", "uncertainty-quantification", "variational-inference"),
        (
            "a Bayesian neural network with a mean-field Gaussian posterior",
            "Monte Carlo dropout as approximate inference",
            "deep ensembles compared with a Laplace approximation",
        ),
        (
            "the Bayes-by-backprop objective and its gradient estimator",
            "the linearized Laplace predictive distribution",
            "the expected calibration error decomposition",
        ),
        (
            "Bayes-by-backprop with the local reparameterization trick",
            "a last-layer Laplace approximation with a GGN Hessian",
        ),
        (
            "Bayesian neural networks calibration out-of-distribution",
            "Laplace approximation last layer deep networks",
        ),
        ("expected calibration error", "ECE = sum_b |B_b|/n * |acc(B_b) - conf(B_b)| with 15 bins"),
        "a reliability diagram on in- and out-of-distribution data",
    ),
    Topic(
        ("control-theory", "lyapunov-stability", "robotics"),
        (
            "a control barrier function for a planar manipulator",
            "an LQR controller for a cart-pole",
            "model predictive control of a quadrotor",
        ),
        (
            "the Riccati equation and the closed-loop stability margin",
            "the CBF-QP constraint and forward invariance of the safe set",
            "the Lyapunov decrease condition of the MPC value function",
        ),
        (
            "a CBF-QP safety filter around a nominal controller",
            "an MPC loop with a warm-started QP solver",
        ),
        (
            "control barrier functions quadratic program safety robotics",
            "model predictive control stability terminal constraint",
        ),
        ("constraint violation rate", "share of time steps with h(x) < 0 over 100 rollouts"),
        "a check that the Lyapunov function decreases along simulated trajectories",
    ),
    Topic(
        ("neural-architecture-search", "automl", "bilevel-optimization"),
        (
            "differentiable architecture search over a cell search space",
            "a one-shot supernet with weight sharing",
            "hyperparameter optimization with successive halving",
        ),
        (
            "the bilevel gradient with the finite-difference Hessian approximation",
            "the continuous relaxation of the architecture choice",
            "the resource allocation of successive halving",
        ),
        (
            "a DARTS search loop with architecture and weight optimizers",
            "a Hyperband scheduler with early stopping",
        ),
        (
            "differentiable architecture search bilevel approximation collapse",
            "hyperband successive halving hyperparameter optimization",
        ),
        (
            "validation accuracy of the derived architecture",
            "accuracy after retraining the discrete cell for 50 epochs",
        ),
        "a check that architecture weights receive non-zero gradients",
    ),
    Topic(
        ("physics-informed-ml", "pde", "scientific-computing"),
        (
            "a physics-informed neural network for the 1D Burgers' equation",
            "a PINN for 2D Navier-Stokes flow",
            "a Fourier neural operator for Darcy flow",
        ),
        (
            "the composite loss with PDE residual and boundary terms",
            "the strong form of the PDE residual and its automatic-differentiation gradient",
            "the spectral convolution of the Fourier layer",
        ),
        (
            "a PINN with adaptive loss weighting",
            "a Fourier neural operator with truncated spectral modes",
        ),
        (
            "physics-informed neural networks Burgers equation loss weighting",
            "Fourier neural operator Darcy flow resolution invariance",
        ),
        ("relative L2 error", "||u_pred - u_ref||_2 / ||u_ref||_2 on a 256 x 100 grid"),
        "a comparison against a finite-difference reference solution",
    ),
    Topic(
        ("topological-data-analysis", "persistent-homology", "manifold-learning"),
        (
            "persistent homology of a noisy point cloud",
            "Mapper graphs of single-cell data",
            "a Vietoris-Rips filtration of time-delay embeddings",
        ),
        (
            "the stability theorem for persistence diagrams",
            "the boundary matrix reduction and its complexity",
            "the bottleneck distance between diagrams",
        ),
        (
            "a Vietoris-Rips persistence pipeline with bottleneck distances",
            "a Mapper implementation with cover and clustering choices",
        ),
        (
            "persistent homology stability bottleneck distance",
            "Mapper algorithm topological data analysis",
        ),
        (
            "bottleneck distance to the noiseless diagram",
            "d_B(D_noisy, D_clean) averaged over 20 samples",
        ),
        "a check that Betti numbers of a sampled torus are (1, 2, 1)",
    ),
    Topic(
        ("sparse-coding", "dictionary-learning", "compressed-sensing"),
        (
            "dictionary learning for image patches",
            "basis pursuit recovery of sparse signals",
            "the iterative shrinkage-thresholding algorithm",
        ),
        (
            "the ISTA update and its O(1/k) rate",
            "the restricted isometry condition for exact recovery",
            "the K-SVD dictionary update",
        ),
        ("FISTA with backtracking line search", "K-SVD with orthogonal matching pursuit coding"),
        (
            "ISTA FISTA convergence sparse coding dictionary learning",
            "restricted isometry property basis pursuit recovery",
        ),
        ("reconstruction error", "||Y - DX||_F^2 / (m * n) on held-out patches"),
        "a phase-transition plot of recovery probability",
    ),
    Topic(
        ("diffusion-models", "generative-modeling", "stochastic-differential-equations"),
        (
            "a score-based diffusion model",
            "a denoising diffusion probabilistic model on CIFAR-10",
            "the probability-flow ODE sampler",
        ),
        (
            "the denoising score-matching objective",
            "the reverse-time SDE and its probability-flow ODE",
            "the variational bound of the DDPM objective",
        ),
        (
            "a DDPM trainer with a cosine noise schedule",
            "a probability-flow ODE sampler with an adaptive solver",
        ),
        (
            "score-based generative modeling SDE probability flow",
            "denoising diffusion probabilistic models noise schedule",
        ),
        ("Frechet Inception Distance", "FID on 10,000 samples against the test set statistics"),
        "a check that the learned score matches the analytical score of a Gaussian mixture",
    ),
    Topic(
        ("molecular-dynamics", "computational-chemistry", "numerical-integration"),
        (
            "a Lennard-Jones fluid in a periodic box",
            "the velocity Verlet integrator",
            "a Langevin thermostat for a protein fragment",
        ),
        (
            "the symplectic property and energy drift of velocity Verlet",
            "the fluctuation-dissipation relation of the Langevin thermostat",
            "the virial expression for the pressure",
        ),
        (
            "a velocity Verlet simulation with neighbour lists",
            "a Langevin dynamics integrator with a BAOAB splitting",
        ),
        (
            "velocity Verlet energy drift symplectic integrator",
            "Langevin thermostat BAOAB splitting sampling accuracy",
        ),
        ("relative energy drift", "|E(T) - E(0)| / |E(0)| over 100,000 steps"),
        "a comparison of the radial distribution function with reference data",
    ),
    Topic(
        ("tensor-decomposition", "numerical-linear-algebra", "low-rank-approximation"),
        (
            "a Tucker decomposition of a convolutional weight tensor",
            "CP decomposition by alternating least squares",
            "a tensor-train compression of an embedding table",
        ),
        (
            "the higher-order SVD and its approximation bound",
            "the ALS normal equations for CP",
            "the rank-truncation error of the TT-SVD",
        ),
        ("HOSVD and HOOI for layer compression", "CP-ALS with line search"),
        (
            "Tucker decomposition neural network compression HOSVD",
            "CP decomposition alternating least squares convergence",
        ),
        ("relative reconstruction error", "||W - W_hat||_F / ||W||_F for each compressed layer"),
        "a check that the reconstruction error matches the discarded singular values",
    ),
    Topic(
        ("combinatorial-game-theory", "dynamic-programming", "graph-theory"),
        (
            "Sprague-Grundy values of an impartial game",
            "minimum dominating set via tree decomposition",
            "optimal play in a partisan game",
        ),
        (
            "the Sprague-Grundy theorem for disjunctive sums",
            "the dynamic-programming recurrence over a nice tree decomposition",
            "the correctness of the memoized minimax recursion",
        ),
        ("a memoized Grundy-value solver", "dynamic programming over a tree decomposition"),
        (
            "Sprague-Grundy theorem impartial games nim",
            "tree decomposition dynamic programming dominating set",
        ),
        (
            "exact agreement with brute force",
            "share of 500 random instances matching exhaustive search",
        ),
        "a brute-force comparison on instances with at most 12 vertices",
    ),
)

FRAMEWORKS = ("PyTorch", "JAX", "NumPy", "SciPy", "NumPy and SciPy", "TensorFlow", "CuPy")
OPENERS = (
    "I need a rigorous analysis of {subject}.",
    "I am investigating {subject} and need a careful treatment.",
    "Derive and implement {subject} end to end.",
    "Please help me study {subject} from first principles.",
    "For a research project I am working on {subject}.",
    "I want to understand {subject} both theoretically and empirically.",
    "Our team is benchmarking {subject}.",
)
INTRO_OPENERS = (
    "How does {subject} work?",
    "Can you explain {subject} in simple terms?",
    "I am new to {tag}: how would I approach {subject}?",
    "What is the basic idea behind {subject}?",
)
MATH_ASKS = (
    "Provide a full derivation of {derivation}.",
    "Start by deriving {derivation}, stating every assumption.",
    "I need a formal derivation of {derivation}.",
    "Work out {derivation} carefully.",
)
CODE_ASKS = (
    "Then implement {implementation} in {framework}",
    "Next, write {implementation} using {framework}",
    "After that, build {implementation} in {framework}",
)
SETTINGS = (
    " with {n:,} samples and seed {seed}",
    " for a problem of dimension {dim}",
    " with a batch size of {batch} and {epochs} epochs",
    " on {n:,} synthetic examples",
    " using {workers} workers and a budget of {epochs} iterations",
)
VALIDATE_ASKS = (
    "Finally, validate the result with {check}.",
    "Validate the implementation with {check} and report {metric}.",
    "Confirm correctness with {check}, and compare against a baseline.",
    "Report {metric} and explain any gap between theory and experiment.",
)
INTRO_ASKS = (
    "I would like a short derivation of {derivation} and a small {framework} example.",
    "Please show the key equations and a minimal {framework} script.",
    "A simple worked example in {framework} would help.",
)
CITE_ASKS = (
    " Cite at least two relevant arXiv papers.",
    " Ground the approach in recent literature.",
    "",
    "",
)


# --------------------------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------------------------


def _weighted(rng: random.Random, items: tuple[tuple[Any, float], ...]) -> Any:
    values = [item for item, _ in items]
    weights = [weight for _, weight in items]
    return rng.choices(values, weights=weights, k=1)[0]


def _query(rng: random.Random, topic: Topic, difficulty: str, ctx: dict[str, Any]) -> str:
    fmt = dict(ctx)
    if difficulty == "introductory":
        parts = [rng.choice(INTRO_OPENERS), rng.choice(INTRO_ASKS)]
        setting = rng.choice(SETTINGS)
        parts[1] = parts[1].rstrip(".") + setting + "."
    else:
        parts = [rng.choice(OPENERS), rng.choice(MATH_ASKS)]
        parts.append(rng.choice(CODE_ASKS) + rng.choice(SETTINGS) + ".")
        parts.append(rng.choice(VALIDATE_ASKS))
        if difficulty == "advanced":
            parts.append(
                rng.choice(
                    (
                        "Discuss the complexity and numerical stability of each step.",
                        "Pay attention to convergence guarantees and failure modes.",
                        "Quantify the trade-off between runtime and accuracy.",
                        "State where the assumptions break down in practice.",
                    )
                )
            )
    text = " ".join(part.format(**fmt) for part in parts) + rng.choice(CITE_ASKS)
    return text[0].upper() + text[1:]


def _search_step(rng: random.Random, topic: Topic, ctx: dict[str, Any]) -> str:
    terms = ctx["search"]
    extra = rng.choice(("", " tutorial", " benchmark", " survey", f" {ctx['tag2']}"))
    site = rng.choice(("site:arxiv.org ", "site:arxiv.org ", "site:openreview.net ", ""))
    mode = _weighted(rng, SEARCH_MODES)
    return f'/general-search(query="{site}{terms}{extra}", mode={mode})'


def _math_step(rng: random.Random, topic: Topic, ctx: dict[str, Any], second: bool) -> str:
    if second:
        body = (
            f"Validate the empirical results from the code agent against {ctx['derivation']}. "
            f"Quantify the discrepancy using {ctx['metric_name']} and justify any deviation "
            "with the assumptions of the derivation."
        )
    else:
        body = f"Derive {ctx['derivation']} for {ctx['subject']}. " + rng.choice(
            (
                "State every assumption and the conditions under which the result holds.",
                "Analyze the convergence behaviour and the complexity of each step.",
                "Make the link to the literature explicit and keep the notation consistent.",
            )
        )
    return f"/math({body})"


def _code_step(rng: random.Random, topic: Topic, ctx: dict[str, Any], second: bool) -> str:
    if second:
        body = (
            f"Run an ablation of {ctx['implementation']} over {ctx['seeds']} seeds, logging "
            f"{ctx['metric_name']} and runtime, and export the tables."
        )
    else:
        body = (
            f"Implement {ctx['implementation']} in {ctx['framework']} for {ctx['subject']}. "
            f"Track {ctx['metric_name']} and validate with {topic.check}."
        )
    suffix = rng.choice((", using Python", ", using Python", ""))
    return f"/code({body}{suffix})"


_AGENT_ROLE = {
    "/general-search": "gathers authoritative sources on {search}",
    "/math": "derives {derivation}",
    "/code": "implements {implementation} and runs the experiments",
}


def _rationale(plan: list[str], ctx: dict[str, Any]) -> str:
    sentences = []
    for index, tool in enumerate(plan):
        role = _AGENT_ROLE[tool].format(**ctx)
        if index == 0:
            lead = (
                "The blue /general-search agent first"
                if tool == "/general-search"
                else f"The {tool} agent first"
            )
            sentences.append(f"{lead} {role}.")
        elif index == len(plan) - 1:
            sentences.append(f"Finally, the {tool} agent {role}, closing the loop.")
        else:
            sentences.append(f"The {tool} agent then {role}.")
    sentences.append(
        "Splitting the work this way keeps derivation, implementation and evidence separately "
        "checkable before the router's final review, and each hand-off carries a concrete "
        f"artifact: sources, equations for {ctx['subject']}, then code and measurements of "
        f"{ctx['metric_name']}."
    )
    return " ".join(sentences)


def _artifacts(rng: random.Random, ctx: dict[str, Any]) -> list[str]:
    dash = "- " if rng.random() < 0.3 else ""
    items = [
        f"A PDF or LaTeX document with the step-by-step derivation of {ctx['derivation']}.",
        f"A Python script (`{ctx['slug']}.py`) implementing {ctx['implementation']} with a fixed seed.",
        f"PNG plots of {ctx['metric_name']} versus iterations for every configuration.",
        f"A JSON file with the final {ctx['metric_name']} and runtime for each run.",
        "A short report citing at least two relevant arXiv papers with their IDs.",
    ]
    if rng.random() < 0.3:
        items.pop(rng.randrange(2, 4))
    return [dash + item for item in items]


def _outline(rng: random.Random, plan: list[str], ctx: dict[str, Any]) -> list[str]:
    steps = [
        f"Formulate {ctx['subject']} precisely, fixing notation, assumptions and the quantities to be computed.",
        f"Derive {ctx['derivation']}, checking each intermediate identity and the conditions it relies on.",
        f"Implement {ctx['implementation']} in {ctx['framework']}, keeping the code structure aligned with the derivation.",
        f"Validate the implementation with {ctx['check']} before running the full experiments.",
        f"Run the experiments{ctx['setting']} and record {ctx['metric_name']} for every configuration.",
        f"Check that the empirical behaviour agrees with the theory and explain any discrepancy in {ctx['metric_name']}.",
    ]
    if "/general-search" in plan:
        steps.insert(
            rng.randrange(0, 2),
            f"Survey the literature on {ctx['search']} and extract the key results to build on.",
        )
    if rng.random() < 0.25:
        steps.pop(rng.randrange(3, len(steps)))
    return [f"{index}. {step}" for index, step in enumerate(steps, start=1)]


def _handoff(rng: random.Random, plan: list[str], ctx: dict[str, Any]) -> str:
    chain = " -> ".join([*plan, "router QA"])
    parts = [f"{chain}."]
    for before, after in zip(plan, plan[1:], strict=False):
        parts.append(f"The {after} agent receives the {_PRODUCT[before]} from {before}.")
    parts.append(
        f"Verification: {ctx['check']} must pass and {ctx['metric_name']} must be reported."
    )
    parts.append(
        "Fallback: "
        + rng.choice(
            (
                "if the check fails, the task returns to /math to audit the derivation before new runs.",
                "if results disagree with theory, /code re-runs with smaller step sizes and logs the failure.",
                "if sources conflict, /general-search gathers one more survey before /math continues.",
            )
        )
    )
    return " ".join(parts)


_PRODUCT = {
    "/general-search": "curated papers and key equations",
    "/math": "final derivation and its assumptions",
    "/code": "implementation, logs and plots",
}

_TODO = {
    "/general-search": (
        "Find and summarize at least two arXiv papers on {search}.",
        "Collect reference values for {metric_name} from the literature.",
    ),
    "/math": (
        "Derive {derivation} with every assumption stated.",
        "Verify that the implementation matches the derived formulas term by term.",
    ),
    "/code": (
        "Implement {implementation} in {framework}.",
        "Run the experiments{setting} and plot {metric_name}.",
    ),
}


def _todo(rng: random.Random, plan: list[str], ctx: dict[str, Any]) -> list[str]:
    items = []
    for tool in plan:
        templates = _TODO[tool]
        count = 2 if rng.random() < 0.8 else 1
        for template in templates[:count]:
            items.append(f"- [ ] {tool}: {template.format(**ctx)}")
    items.append(f"- [ ] /math: Check {ctx['check']} against the derivation.")
    if "/code" in plan and rng.random() < 0.7:
        items.append(
            f"- [ ] /code: Record runtime and peak memory for every run and list the failure "
            f"cases observed while measuring {ctx['metric_name']}."
        )
    items.append(ROUTER_QA)
    return items


def _acceptance(rng: random.Random, ctx: dict[str, Any]) -> list[str]:
    items = [
        f"- The derivation of {ctx['derivation']} is complete and every step is justified.",
        f"- The code runs from a clean environment and reproduces {ctx['metric_name']} with the fixed seed.",
        f"- {ctx['check'][0].upper() + ctx['check'][1:]} passes and is documented in the report.",
        "- The report cites at least two relevant arXiv papers with their IDs.",
    ]
    if rng.random() < 0.3:
        items.append(
            f"- Plots show {ctx['metric_name']} for every configuration with labelled axes."
        )
    return items


def _guidance_text(rng: random.Random, ctx: dict[str, Any], role: str) -> str:
    if role == "computation":
        return f"Calculate {ctx['metric_name']} as {ctx['metric_formula']}."
    return rng.choice(
        (
            f"Compute {ctx['metric_name']} as {ctx['metric_formula']} and compare it with the target.",
            f"Boolean pass/fail: {ctx['check']} succeeds with the provided seed.",
            f"Report {ctx['metric_name']} with a 95% bootstrap confidence interval over {ctx['seeds']} seeds.",
        )
    )


def _metrics(rng: random.Random, ctx: dict[str, Any]) -> dict[str, Any]:
    shape = _weighted(rng, METRICS_SHAPES)
    out: dict[str, Any] = {}
    for key in shape:
        if key == "primary":
            out[key] = [PRIMARY_METRIC]
        elif key == "secondary":
            out[key] = [SECONDARY_METRIC]
        elif key.endswith("_computation"):
            out[key] = _guidance_text(rng, ctx, "computation")
        elif key.endswith("_description"):
            out[key] = f"{ctx['metric_name'][0].upper()}{ctx['metric_name'][1:]}, reported per run."
        elif key.endswith("_guidance") and key not in DICT_VALUE_SHARE:
            out[key] = _guidance_text(rng, ctx, "guidance")
        elif rng.random() < DICT_VALUE_SHARE.get(key, 0.0):
            out[key] = {
                ctx["metric_key"]: f"{ctx['metric_formula']}.",
                "runtime_seconds": "Wall-clock time of the full experiment on one machine.",
            }
        else:
            out[key] = _guidance_text(rng, ctx, "guidance")
    return out


def _slug(text: str) -> str:
    words = "".join(ch if ch.isalnum() else " " for ch in text.lower()).split()
    return "_".join(words[:3]) or "experiment"


def _make_row(rng: random.Random, index: int, seen: set[bytes]) -> dict[str, Any]:
    topic = rng.choice(TOPICS)
    difficulty = _weighted(rng, DIFFICULTY_WEIGHTS)
    plan_tools = list(_weighted(rng, ROUTE_TEMPLATES))
    for _attempt in range(100):
        setting_values = {
            "n": rng.randrange(1, 200) * 500,
            "seed": rng.randrange(0, 10_000),
            "dim": rng.choice((16, 32, 64, 128, 256, 512, 1024)) * rng.randrange(1, 9),
            "batch": rng.choice((32, 64, 128, 256, 512)),
            "epochs": rng.randrange(5, 400),
            "workers": rng.randrange(2, 65),
        }
        ctx: dict[str, Any] = {
            "subject": rng.choice(topic.subjects),
            "derivation": rng.choice(topic.derivations),
            "implementation": rng.choice(topic.implementations),
            "framework": rng.choice(FRAMEWORKS),
            "search": rng.choice(topic.search_terms),
            "check": topic.check,
            "metric": topic.metric[0],
            "metric_name": topic.metric[0],
            "metric_formula": topic.metric[1],
            "metric_key": topic.metric[0].replace(" ", "_").replace("-", "_").lower(),
            "tag": topic.tags[0].replace("-", " "),
            "tag2": topic.tags[1].replace("-", " "),
            "seeds": rng.choice((3, 5, 10, 20)),
            **setting_values,
        }
        ctx["setting"] = rng.choice(SETTINGS).format(**ctx)
        query = _query(rng, topic, difficulty, ctx)
        key = hashlib.blake2b(query.encode("utf-8"), digest_size=12).digest()
        if key not in seen:
            seen.add(key)
            break
    else:  # pragma: no cover - 100 collisions in a row cannot happen with these vocabularies
        raise RuntimeError("could not compose a new query")
    ctx["slug"] = _slug(ctx["implementation"])

    plan: list[str] = []
    seen_tools: set[str] = set()
    for tool in plan_tools:
        second = tool in seen_tools
        seen_tools.add(tool)
        if tool == "/general-search":
            plan.append(_search_step(rng, topic, ctx))
        elif tool == "/math":
            plan.append(_math_step(rng, topic, ctx, second))
        else:
            plan.append(_code_step(rng, topic, ctx, second))

    extra_tags = [tag for tag in topic.tags[1:]]
    tag_count = rng.choices((2, 3, 4), weights=(3, 92, 5))[0]
    tags = [topic.tags[0], *extra_tags][: min(tag_count, len(topic.tags))]
    if tag_count == 4:
        tags.append(rng.choice(TOPICS).tags[0])
        tags = list(dict.fromkeys(tags))

    row: dict[str, Any] = {
        "id": f"synth_{index:06d}",
        "user_query": query,
        "task_summary": query[:120],
        "route_plan": plan,
        "route_rationale": _rationale(plan_tools, ctx),
        "expected_artifacts": _artifacts(rng, ctx),
        "thinking_outline": _outline(rng, plan_tools, ctx),
        "handoff_plan": _handoff(rng, plan_tools, ctx),
        "todo_list": _todo(rng, plan_tools, ctx),
        "difficulty": difficulty,
        "tags": tags,
        "quality_score": round(rng.uniform(0.8, 0.98), 2),
        "acceptance_criteria": _acceptance(rng, ctx),
        "metrics": _metrics(rng, ctx),
        "compute_budget": {
            "gpu_hours": rng.choice((0, 1, 2, 4, 8)),
            "max_runtime_minutes": rng.choice((30, 60, 120, 240)),
        },
        "repro": {"seed": ctx["seed"], "framework": ctx["framework"], "python": "3.11"},
        "requires_browse": "/general-search" in plan_tools,
        "citation_policy": "Cite at least two arXiv papers with their IDs."
        if "/general-search" in plan_tools
        else "Cite sources when used.",
        "io_schema": {
            "inputs": ["user_query"],
            "outputs": ["report.md", f"{ctx['slug']}.py", "metrics.json"],
        },
    }
    return row


def generate_rows(n: int, seed: int) -> Iterator[dict[str, Any]]:
    """``n`` synthetic Week-2 rows from ``seed``; the same arguments give the same rows."""
    if n < 0:
        raise InputError(f"--rows must be at least 0, got {n}")
    rng = random.Random(f"routerlib-synth:{seed}")
    seen: set[bytes] = set()
    for index in range(n):
        yield _make_row(rng, index, seen)


def write_rows(path: str | os.PathLike[str], n: int, seed: int) -> Path:
    """Write ``n`` rows from ``seed`` as JSONL to ``path`` (atomically) and return the path."""
    target = Path(path)
    with atomic_writer(target, "wb") as handle:
        buffer: list[bytes] = []
        for row in generate_rows(n, seed):
            buffer.append((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
            if len(buffer) >= 1000:
                handle.write(b"".join(buffer))
                buffer.clear()
        handle.write(b"".join(buffer))
    return target
