#!/bin/sh
# Vendors every crate of Cargo.lock into vendor/ and writes vendor/cargo-config.toml, the
# source replacement the Dockerfile appends to .cargo/config.toml when it finds it: the
# image then builds with `cargo build --locked --offline`, reaching no registry.
#
# Run it on a machine that reaches crates.io; then `docker build .` (even with
# `--network=none` once the base images are pulled or mirrored). Delete vendor/ to go back
# to fetching the crates at build time.
set -eu
cd "$(dirname "$0")/.."
config="$(mktemp)"
trap 'rm -f "$config"' EXIT
# `cargo vendor` prints the source replacement on stdout, its progress on stderr.
cargo vendor --locked --versioned-dirs vendor/ > "$config"
{
    echo
    echo "# Written by deploy/vendor.sh: the crates come from vendor/ (relative to the"
    echo "# directory that holds .cargo/), so the build reaches no registry."
    cat "$config"
} > vendor/cargo-config.toml
echo "vendored $(find vendor -mindepth 1 -maxdepth 1 -type d | wc -l) crates into vendor/;" \
    "the image now builds offline" >&2
