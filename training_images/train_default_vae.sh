#!/usr/bin/env bash
# Rebuild geoinv/prior/data/default_vae.pt from the shipped training image.
#
# Five runs resume one checkpoint; each stops at a step count (--steps is the
# total), so the chain is the same however often a run is interrupted and
# rerun (rerun this script: a finished run returns at once). --minutes only
# caps one call. About 3 h on a 2-core CPU. Every run's settings end up in the
# checkpoint's metadata under "runs".
set -euo pipefail
cd "$(dirname "$0")/.."
checkpoint=${GEOINV_VAE_CHECKPOINT:-$HOME/.cache/geoinv/vae-train/checkpoint.pt}
image=geoinv/prior/data/channels_2500.h5
common=(--image "$image" --checkpoint "$checkpoint" --lr-decay 0.85 --lr-decay-steps 10000 --beta-warmup 2000
        --threads 2)

# 1. plain VAE with the reference KL weight: a smooth, well-organised latent space
geoinv train-vae "${common[@]}" --steps 20019 --beta 1000
# 2.-3. lower KL weight: more information per model, sharper reconstructions
geoinv train-vae "${common[@]}" --steps 25441 --beta 250
geoinv train-vae "${common[@]}" --steps 30655 --beta 100
# 4.-5. adversarial term on prior draws: binary-like, realistic prior samples
geoinv train-vae "${common[@]}" --steps 37211 --beta 100 --adversarial 1.0
geoinv train-vae "${common[@]}" --steps 41085 --beta 100 --adversarial 2.0

geoinv export-vae "$checkpoint" geoinv/prior/data/default_vae.pt --overwrite
