"""Pack files into tars of at most ``--tar-mb`` each, in the order given, for the device tool's return
limits (8 files of 16 MB, 64 MB per call): groups go to ``--out`` while they fit ``--budget-mb`` and the
file count, the rest to ``--pending`` (fetched by a second call).

    python benchmarks/pack.py --out OUT --pending DIR NAME=GLOB[,GLOB...] ...
"""

from __future__ import annotations

import argparse
import glob
import os
import tarfile
from pathlib import Path


def expand(spec: str) -> list[Path]:
    files: list[Path] = []
    for pattern in spec.split(","):
        for match in sorted(glob.glob(pattern)):
            p = Path(match)
            files += sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pending", type=Path, required=True)
    parser.add_argument("--budget-mb", type=float, default=60)
    parser.add_argument("--tar-mb", type=float, default=15)
    parser.add_argument("--max-files", type=int, default=7, help="files in --out besides the ones already there")
    parser.add_argument("groups", nargs="+", metavar="NAME=GLOB[,GLOB...]")
    args = parser.parse_args()
    args.pending.mkdir(parents=True, exist_ok=True)
    used, count = 0.0, 0
    for group in args.groups:
        name, spec = group.split("=", 1)
        files = expand(spec)
        tars: list[list[Path]] = [[]]
        size = 0.0
        for f in files:
            mb = f.stat().st_size / 2**20
            if tars[-1] and size + mb > args.tar_mb:
                tars.append([])
                size = 0.0
            tars[-1].append(f)
            size += mb
        for k, members in enumerate(t for t in tars if t):
            mb = sum(f.stat().st_size for f in members) / 2**20
            fits = used + mb <= args.budget_mb and count < args.max_files
            dest = (args.out if fits else args.pending) / f"{name}-{k}.tar"
            with tarfile.open(dest, "w") as tar:
                for f in members:
                    tar.add(f, arcname=os.path.relpath(f, "/") if f.is_absolute() else str(f))
            if fits:
                used, count = used + mb, count + 1
            print(f"{dest}: {len(members)} files, {mb:.1f} MB{'' if fits else ' (pending: fetch with a second call)'}")


if __name__ == "__main__":
    main()
