"""`make wheelhouse`: every wheel the suite itself needs, for a target Python and platform,
in one folder, for a GPU host with no package index (`make setup WHEELHOUSE=<dir>`).

The framework is left out (the host has its own: `make setup` reuses it). Run on a
connected machine with any Python >= 3.11 (standard library only). Packages published as
source only (antlr4-python3-runtime, which hydra-core needs) are built into wheels here
first: they are pure Python, so the wheel fits any target."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
# What pip needs to build the project itself, offline, in build isolation.
BUILD = ["setuptools>=68", "wheel"]


def requirements(extras: list[str]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional or e == "frameworks"]
    if unknown:
        valid = ", ".join(e for e in optional if e != "frameworks")
        raise SystemExit(f"error: unknown extra {unknown[0]!r} for a wheelhouse. Valid: {valid}")
    return [*project["dependencies"], *(r for e in extras for r in optional[e]), *BUILD]


def pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args])
    if done.returncode != 0:
        raise SystemExit(f"error: pip {args[0]} failed (exit {done.returncode})")


def build(dest: Path, reqs: list[str], python: str, platforms: list[str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # Resolve for this Python to find the packages that exist only as source, and build those.
        pip("download", "-q", "--dest", tmp, *reqs)
        for source in [*Path(tmp).glob("*.tar.gz"), *Path(tmp).glob("*.zip")]:
            pip("wheel", "-q", "--no-deps", "--wheel-dir", str(dest), str(source))
        if python == "%d.%d" % sys.version_info[:2] and not platforms:  # the target is this machine:
            for wheel in Path(tmp).glob("*.whl"):  # what it resolved is the wheelhouse (a second resolve, ~9 s)
                shutil.move(wheel, dest / wheel.name)
            return
    targets = [arg for platform in platforms for arg in ("--platform", platform)]
    pip(
        "download", "-q", "--dest", str(dest), "--find-links", str(dest), "--only-binary=:all:",
        "--python-version", python, "--implementation", "cp", *targets, *reqs,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="make wheelhouse", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", default="wheelhouse")
    parser.add_argument("--python", default="%d.%d" % sys.version_info[:2], help="target Python, e.g. 3.12")
    parser.add_argument("--platform", action="append", help="target platform tag(s); default: this machine's")
    parser.add_argument("--extras", default="zoo", help="optional parts besides the core (default zoo: transformers)")
    args = parser.parse_args(argv)
    extras = [e for e in args.extras.replace(" ", ",").split(",") if e]
    platforms = args.platform or []
    build(Path(args.dest), requirements(extras), args.python, platforms)
    wheels = sorted(p.name for p in Path(args.dest).glob("*.whl"))
    size = sum(p.stat().st_size for p in Path(args.dest).glob("*.whl")) / 2**20
    target = ", ".join(platforms) or "this platform"
    print(f"{len(wheels)} wheels, {size:.1f} MiB in {args.dest} for Python {args.python} ({target})")


if __name__ == "__main__":
    main()
