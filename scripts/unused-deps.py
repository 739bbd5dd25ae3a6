#!/usr/bin/env python3
"""Lists dependencies a workspace crate declares but never names in its code (what
`cargo machete` reports, without building it): normal ones against src/ and build.rs,
dev-dependencies against everything in the crate. Crates used only by generated code are
listed under `[package.metadata.cargo-machete] ignored` (the key cargo-machete reads too).
Exits 1 when anything is unused."""
import glob
import re
import sys
import tomllib

root = tomllib.load(open("Cargo.toml", "rb"))
unused = []
for member in root["workspace"]["members"]:
    manifest = tomllib.load(open(f"{member}/Cargo.toml", "rb"))
    ignored = set(
        manifest.get("package", {}).get("metadata", {}).get("cargo-machete", {}).get("ignored", [])
    )

    def code(patterns):
        files = [f for p in patterns for f in glob.glob(f"{member}/{p}", recursive=True)]
        return "\n".join(open(f).read() for f in files if "/target/" not in f)

    sources = code(["src/**/*.rs", "build.rs"])
    everything = code(["**/*.rs"])
    for section, text in [("dependencies", sources), ("build-dependencies", sources), ("dev-dependencies", everything)]:
        for name in manifest.get(section, {}):
            ident = name.replace("-", "_")
            if name not in ignored and not re.search(rf"\b{re.escape(ident)}\b", text):
                unused.append(f"{member}: [{section}] {name}")
for line in unused:
    print(f"unused dependency: {line}")
sys.exit(1 if unused else 0)
