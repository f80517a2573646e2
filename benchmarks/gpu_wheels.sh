#!/usr/bin/env bash
# Download, here, the wheels of segpipe's dependencies that the lent GPU machine's image lacks
# (its Python 3.12 has torch, numpy, scipy, scikit-image, tifffile, typer and pytest, and no
# registry), at the versions constraints.txt pins, into .whl/ (ignored by git; about 18 MB).
# Then run the GPU checks in one device call with `.whl` carried:
#     WHEELS=.whl bash benchmarks/gpu.sh
# The list is what `benchmarks/gpu.sh`'s steps import beyond the image's packages (2026-12-04).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
names="monai nibabel zarr numcodecs donfig google-crc32c pydantic pydantic_core typing-inspection annotated-types
       jsonschema jsonschema-specifications referencing rpds-py rfc3339-validator jsonpointer pytz"
specs=()
for name in $names; do
    pattern="^${name//[-_]/[-_]}=="
    spec=$(grep -i -m1 "$pattern" constraints.txt) || { echo "$name: not pinned in constraints.txt" >&2; exit 2; }
    specs+=("$spec")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${specs[@]}"
du -sh .whl
