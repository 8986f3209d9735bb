"""Checkpoints of a training call (:class:`_Checkpoints`): orbax saves of the state, one
per epoch, checked against a manifest of file digests and the run's fingerprint when
restored; and the barrier of a multi-process run."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

_MANIFEST = "optlab_files.json"


class _DamagedError(Exception):
    """A checkpoint failed optlab's own checks."""


class _ConfigMismatchError(ValueError):
    """The checkpoints belong to another configuration."""


class _Checkpoints:
    """Orbax checkpoints of the training state + the host-side history, one per epoch.

    Each checkpoint stores the run's fingerprint (``optlab.run_identity._identity``) and, in
    ``_MANIFEST``, the sha256 of each of its files, checked before orbax reads them
    (orbax/TensorStore report damaged data with pages of tracebacks, or not at all); a
    checkpoint that fails the check or cannot be read is moved to ``<directory>/damaged/`` and
    the previous one is used instead.

    In a multi-process run (``jax.distributed``) every process saves and restores its shards
    of the state in the same folder (orbax coordinates them); process 0 alone writes the
    manifest and moves damaged checkpoints, and the others wait for it.
    """

    def __init__(self, directory: str | os.PathLike, fingerprint: dict[str, Any],
                 unknown: Sequence[str] = ()):
        import orbax.checkpoint as ocp

        self.ocp = ocp
        self.directory = Path(directory).absolute()
        self.fingerprint = json.loads(json.dumps(fingerprint))
        self.unknown = list(unknown)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=2, create=True, cleanup_tmp_directories=True,
            enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def _refuse_unknown(self) -> None:
        raise ValueError(
            f"checkpoint_dir {self.directory} holds checkpoints, but this run cannot be matched "
            f"to them: {'; '.join(self.unknown)}. Resuming could silently reuse the results of "
            "another configuration, so it is refused. Name the run explicitly with "
            "run_name='...' (a name that changes whenever the configuration changes), or pass "
            "the optimizer as a module-level function with functools.partial keywords (e.g. "
            "functools.partial(optlab.adamw, weight_decay=1e-4)), schedules from "
            "optlab.schedules and the model by name; or use another checkpoint_dir")

    def _check_fingerprint(self, step: int, stored: dict[str, Any]) -> None:
        if stored == self.fingerprint:
            return
        diff = sorted(k for k in set(stored) | set(self.fingerprint)
                      if stored.get(k) != self.fingerprint.get(k))
        raise _ConfigMismatchError(
            f"checkpoint_dir {self.directory} holds a run with a different configuration "
            f"(checkpoint {step} differs in: {', '.join(diff)}); use another directory or "
            "delete it to start afresh")

    def _verify_files(self, step: int) -> None:
        step_dir = self.directory / str(step)
        manifest = step_dir / _MANIFEST
        if not manifest.exists():  # saved, then interrupted before the manifest was written
            return
        try:
            expected = json.loads(manifest.read_text())
        except (OSError, ValueError) as e:
            raise _DamagedError(f"its file list {_MANIFEST} is unreadable ({e})") from None
        actual = _file_digests(step_dir)
        bad = sorted(f for f in set(expected) | set(actual) if expected.get(f) != actual.get(f))
        if bad:
            shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise _DamagedError(f"files changed or missing since it was saved: {shown}")

    def _restore_step(self, step: int, abstract_state):
        ocp = self.ocp
        self._verify_files(step)
        meta = self.manager.restore(
            step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        if not isinstance(meta, dict) or "fingerprint" not in meta:
            raise _DamagedError("its metadata holds no run fingerprint")
        self._check_fingerprint(step, meta["fingerprint"])
        state = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state)))["state"]
        return state, meta

    def restore(self, abstract_state):
        """The newest intact checkpoint ``(state, meta)``, or None when there is none."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            return None
        if self.unknown and self.fingerprint.get("run_name") is None \
                and self.fingerprint.get("config") is None:
            self._refuse_unknown()
        damaged: list[tuple[int, str]] = []
        restored = None
        for step in steps:
            try:
                restored = self._restore_step(step, abstract_state)
                break
            except _ConfigMismatchError:
                raise
            except Exception as e:  # any failure to read means damaged
                damaged.append((step, _one_line(e)))
        if restored is None:
            listing = "; ".join(f"checkpoint {s} ({why})" for s, why in damaged)
            raise ValueError(
                f"checkpoint_dir {self.directory} holds no intact checkpoint: {listing}. "
                "They were left in place; delete or move them (or use another checkpoint_dir) "
                "to start afresh")
        if damaged:
            aside = self.directory / "damaged"
            moved = []
            for s, why in damaged if jax.process_index() == 0 else ():
                aside.mkdir(exist_ok=True)
                stamp = time.strftime("%Y%m%d-%H%M%S")
                target = aside / f"{s}-{stamp}"
                for k in itertools.count(1):
                    if not target.exists():
                        break
                    target = aside / f"{s}-{stamp}-{k}"
                os.replace(self.directory / str(s), target)
                moved.append(f"checkpoint {s} ({why}) moved to {target}")
            _sync_processes("optlab-checkpoints-moved")
            moved = moved or [f"checkpoint {s} ({why}) moved to {aside}" for s, why in damaged]
            self.manager.reload()
            warnings.warn(
                f"checkpoint_dir {self.directory}: damaged checkpoint(s) skipped: "
                f"{'; '.join(moved)}. Resuming from checkpoint {restored[1]['epoch']}.",
                RuntimeWarning, stacklevel=3)
        return restored

    def save(self, epoch: int, state, meta: dict[str, Any]) -> None:
        ocp = self.ocp
        meta = {**meta, "fingerprint": self.fingerprint}
        self.manager.save(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
        self.manager.wait_until_finished()
        if jax.process_index() == 0:  # after orbax's own barrier: every shard is written
            step_dir = self.directory / str(epoch)
            tmp = step_dir / f".{_MANIFEST}.tmp"
            tmp.write_text(json.dumps(_file_digests(step_dir), indent=0))
            os.replace(tmp, step_dir / _MANIFEST)
        _sync_processes(f"optlab-checkpoint-{epoch}")

    def close(self) -> None:
        self.manager.close()


def _sync_processes(name: str) -> None:
    """A barrier across the processes of a multi-process run; a no-op in one process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    text = text[0] if text else ""
    if isinstance(e, _DamagedError):
        return text
    return f"{type(e).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}".rstrip(": ")


def _file_digests(step_dir: Path) -> dict[str, str]:
    """sha256 of every file of a checkpoint, but orbax's optional save-time record and the
    manifest itself."""
    out = {}
    for path in sorted(step_dir.rglob("*")):
        rel = path.relative_to(step_dir).as_posix()
        if path.is_file() and rel not in (_MANIFEST, "_CHECKPOINT_METADATA"):
            h = hashlib.sha256()
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[rel] = h.hexdigest()
    return out

