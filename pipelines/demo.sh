#!/usr/bin/env bash
# The README's demo: generate melt-quench carbon with LAMMPS, ingest it, compute persistent
# homology and SOAP on a local Dask cluster, train Ridge and a short CNN on the PH histograms and
# MLPs on SOAP and on PH + SOAP (model directories with parity plots under demo-output/models),
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
# Models (short runs: the paper's CNN takes ~10 s per epoch here; SchNet: see the README)
for model in ridge "cnn --epochs 3" "soap-mlp --epochs 300" "ph-soap --epochs 300"; do
  name=${model%% *}
  [ -f "$OUT/models/$name/model.json" ] || $PHSTORE train --store "$OUT/store.zarr" --collection C216 --model $model --out "$OUT/models/$name"
done
$PHSTORE compare --store "$OUT/store.zarr" --models "$OUT/models"
$PHSTORE info --store "$OUT/store.zarr"
$PHSTORE query --store "$OUT/store.zarr" --collection C216 --density 2.4 --export "$OUT/density-2.4.nc" --plot "$OUT/density-2.4.png"
