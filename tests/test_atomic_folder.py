"""atomic.atomic_folder: a folder is replaced whole, and an old one is never lost on a failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from routerlib import atomic


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_folder_is_replaced_whole_and_nothing_is_left_beside_it(tmp_path: Path) -> None:
    dest = tmp_path / "report"
    with atomic.atomic_folder(dest) as tmp:
        (tmp / "old.html").write_text("old")
    with atomic.atomic_folder(dest) as tmp:
        assert (dest / "old.html").is_file()  # readers see the old folder while the new is made
        (tmp / "new.html").write_text("new")
    assert _names(dest) == ["new.html"]
    assert _names(tmp_path) == ["report"]


def test_the_old_folder_is_put_back_when_the_new_one_cannot_take_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "report"
    with atomic.atomic_folder(dest) as tmp:
        (tmp / "old.html").write_text("old")
    real_rename = os.rename

    def rename(src: os.PathLike[str] | str, dst: os.PathLike[str] | str) -> None:
        if Path(src).name.endswith(".tmp"):  # the new folder moving into place
            raise OSError("disk trouble")
        real_rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", rename)
    with pytest.raises(OSError, match="disk trouble"):
        with atomic.atomic_folder(dest) as tmp:
            (tmp / "new.html").write_text("new")
    assert _names(dest) == ["old.html"]
    assert _names(tmp_path) == ["report"]
