"""The names every layer shares about scoring: buckets, metric names and their kinds, the headline
(metrics.py records them; config, comparison, checkpoint pick and displays read them)."""

from __future__ import annotations

#: Buckets besides ``overall``, in the order the original evaluator tested them.
BUCKETS: tuple[str, ...] = tuple(
    "math_first four_step has_guidance has_computation advanced".split()
)
ALL_BUCKETS: tuple[str, ...] = ("overall", *BUCKETS)

RETAINED_KEYS: tuple[str, ...] = tuple(
    f"{rank}_{kind}" for kind in ("guidance", "computation") for rank in ("primary", "secondary")
)

#: Every metric name the original evaluator can record, in the order it records them.
ORIGINAL_METRICS: tuple[str, ...] = (
    *"json_valid route_plan_exact route_length_match route_first_tool_match route_last_tool_match "
    "route_tool_precision route_tool_recall metrics_keys_match metrics_primary_list "
    "metrics_primary_nonempty metrics_secondary_list metrics_secondary_nonempty".split(),
    *(f"{key}_retained" for key in RETAINED_KEYS),
    *"todo_tool_alignment todo_covers_all_tools expected_artifacts_nonempty "
    "acceptance_criteria_nonempty handoff_tools_covered handoff_router_qa total_token_count "
    "length_ratio length_ratio_gt_1.1 length_ratio_gt_1.25 length_ratio_lt_0.9".split(),
)
#: Metrics added by routerlib (only in ``strict`` and ``extra``).
EXTRA_METRICS: tuple[str, ...] = ("schema_valid", "tool_sequence_exact")
#: Original metrics that have no "miss" value and are left out of ``strict``.
NOT_STRICT: frozenset[str] = frozenset({"total_token_count", "length_ratio"})
#: Flags where 1 is the bad value (their gates are ``max``); an invalid prediction scores 1.
LOWER_IS_BETTER: frozenset[str] = frozenset(
    {"length_ratio_gt_1.1", "length_ratio_gt_1.25", "length_ratio_lt_0.9"}
)
#: Per-sample values in [0, 1] that are not booleans.
RATE_METRICS: frozenset[str] = frozenset(
    {"route_tool_precision", "route_tool_recall", "todo_tool_alignment"}
)
KNOWN_METRICS: frozenset[str] = frozenset(ORIGINAL_METRICS) | frozenset(EXTRA_METRICS)
#: The headline metrics every summary and table shows (metrics.json, notebooks 04 and 05).
HEADLINE: tuple[str, ...] = tuple(
    "json_valid route_plan_exact route_first_tool_match route_tool_precision route_tool_recall "
    "metrics_keys_match todo_tool_alignment todo_covers_all_tools handoff_tools_covered "
    "length_ratio".split()
)

#: The metric a bucket column and the ranking use.
PRIMARY = "route_plan_exact"
#: The metrics that rank routers, in order (strict values): the exact plan, then the exact tool
#: sequence and tool recall, which still separate routers when no plan is exact, then JSON validity.
DECIDING_METRICS = ("route_plan_exact", "tool_sequence_exact", "route_tool_recall", "json_valid")
