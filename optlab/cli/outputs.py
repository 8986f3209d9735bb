"""The ``--out`` folder of the ``optlab`` command line: checked writable, claimed for one run,
comparison or experiment (``optlab.json``), and the summary table written there."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from optlab.cli.flags import CLIError

MARKER = "optlab.json"  # in every --out folder: what it holds (kind + configuration)


# --------------------------------------------------------------------------------------------
# the output folder: writable, and holding one run or one comparison


def _writable(text: str | None) -> Path | None:
    """Checks that ``--out`` can be created and written (a probe file), before any work;
    folders created for the probe are removed again."""
    if text is None:
        return None
    out = Path(text).expanduser()
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out}: exists and is not a folder")
    created = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".optlab-probe.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise CLIError(f"--out {out}: cannot write there ({e.strerror or e}); choose "
                       "another folder") from None
    finally:
        for p in created:  # deepest first
            try:
                p.rmdir()
            except OSError:
                break
    return out


_KINDS = {"train": "a training run", "compare": "a comparison", "reproduce": "an experiment",
          "meta-train": "a meta-training run"}


def _claim(out: Path | None, kind: str, config: dict[str, Any]) -> None:
    """Marks ``out`` as holding this run (``optlab.json``), or refuses a folder that holds
    something else: another kind of output, another configuration, or files not written by
    optlab. Re-running the same command into its own folder is allowed (it resumes)."""
    from optlab import __version__
    from optlab.io import atomic_write_json, to_jsonable

    if out is None:
        return
    config = json.loads(json.dumps(to_jsonable(config)))
    marker = out / MARKER
    if marker.is_file():
        try:
            there = json.loads(marker.read_text())
            there_kind, there_config = there["kind"], there["config"]
        except (OSError, ValueError, KeyError, TypeError):
            raise CLIError(f"--out {out}: {MARKER} is unreadable; choose another folder"
                           ) from None
        if there_kind != kind:
            raise CLIError(f"--out {out} holds {_KINDS.get(there_kind, there_kind)} "
                           f"(optlab {there_kind}); one folder holds one run, one "
                           "comparison or one experiment: choose another folder")
        if there_config != config:
            diff = sorted(k for k in set(there_config) | set(config)
                          if there_config.get(k) != config.get(k))
            raise CLIError(f"--out {out} holds {_KINDS[kind]} with a different configuration "
                           f"(differs in: {', '.join(diff)}); re-run the same command to "
                           "resume it, or choose another folder")
        return
    if out.is_dir() and any(out.iterdir()):
        raise CLIError(f"--out {out} is not empty and has no {MARKER}, so it was not written "
                       f"by optlab {kind}; choose a new or empty folder")
    atomic_write_json(marker, {"kind": kind, "optlab_version": __version__, "config": config})


def _write_table(out: Path, rows: list[dict], meta: dict) -> None:
    from optlab.io import atomic_write_json, atomic_write_text

    fields = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "summary.csv", buffer.getvalue())
    atomic_write_json(out / "summary.json", {**meta, "results": rows})
    print(f"wrote {out / 'summary.csv'} and {out / 'summary.json'}")
