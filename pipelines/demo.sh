#!/usr/bin/env bash
# The README's demo: generate melt-quench carbon with LAMMPS, ingest it, compute persistent
# homology and SOAP on a local Dask cluster, train Ridge on the PH histograms and a short SchNet
# (storing its embeddings),
# query by density. Re-running skips what is already done.
# Output: demo-output/data (extended XYZ) and demo-output/store.zarr (the feature store).
set -euo pipefail
cd "$(dirname "$0")/.."
PHSTORE=${PHSTORE:-.venv/bin/phstore}
OUT=${OUT:-demo-output}

[ -d "$OUT/data" ] || $PHSTORE generate --out "$OUT/data"
$PHSTORE ingest "$OUT/data" --store "$OUT/store.zarr"
$PHSTORE featurize --store "$OUT/store.zarr" --descriptor ph
$PHSTORE featurize --store "$OUT/store.zarr" --descriptor soap
[ -f "$OUT/ridge/model.json" ] || $PHSTORE train --store "$OUT/store.zarr" --collection C216 --model ridge --out "$OUT/ridge"
[ -f "$OUT/schnet/model.json" ] || $PHSTORE train --store "$OUT/store.zarr" --collection C216 --model schnet --epochs 3 --out "$OUT/schnet"
$PHSTORE featurize --store "$OUT/store.zarr" --descriptor schnet --model "$OUT/schnet"
$PHSTORE info --store "$OUT/store.zarr"
$PHSTORE query --store "$OUT/store.zarr" --collection C216 --density 2.4 --export "$OUT/density-2.4.nc" --plot "$OUT/density-2.4.png"
