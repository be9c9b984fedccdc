#!/usr/bin/env bash
# Re-makes docs/img/cams-scenes.png: one CAM overlay per method on three scenes val images,
# from the checkpoints of a default `cargo xtask reproduce` run (runs/scenes). Needs the
# release `wsss` binary and Python with Pillow for the final montage.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=${RUN:-runs/scenes}
WSSS=${WSSS:-target/release/wsss}
TMP=$(mktemp -d)
# Attention rollout is class-agnostic: the classic model's attention, one map (class 0).
sed 's/kind = "classic"/kind = "rollout"/' "$RUN/classic/cam.toml" > "$TMP/rollout.toml"
# image:foreground class ids (0-based; cls_labels.json is 1-based with background 0).
for item in val_000000:4,6 val_000003:2,4 val_000006:1,6; do
  name=${item%%:*}
  classes=${item##*:}
  image="$RUN/data/JPEGImages/$name.png"
  for m in classic getam weaktr aream; do
    "$WSSS" cam --config "$RUN/$m/cam.toml" --weights "$RUN/$m/train/best.safetensors" \
      --image "$image" --classes "$classes" --overlay "$TMP/${name}_$m.png" > /dev/null
  done
  "$WSSS" cam --config "$TMP/rollout.toml" --weights "$RUN/classic/train/best.safetensors" \
    --image "$image" --classes 0 --overlay "$TMP/${name}_rollout.png" > /dev/null
done
python3 - "$RUN" "$TMP" <<'PY'
import sys
from PIL import Image, ImageDraw
run, tmp = sys.argv[1:]
names = ["val_000000", "val_000003", "val_000006"]
cols = ["image", "ground truth", "classic CAM", "rollout", "GETAM", "WeakTr (fine)", "AReAM"]
side, pad, head = 96 * 3, 4, 18
out = Image.new("RGB", (len(cols) * (side + pad) + pad, head + len(names) * (side + pad) + pad), "white")
draw = ImageDraw.Draw(out)
for j, c in enumerate(cols):
    draw.text((pad + j * (side + pad) + 4, 3), c, fill="black")
for i, n in enumerate(names):
    tiles = [f"{run}/data/JPEGImages/{n}.png", f"{run}/data/SegmentationClass/{n}.png"]
    tiles += [f"{tmp}/{n}_{m}.png" for m in ["classic", "rollout", "getam", "weaktr", "aream"]]
    for j, path in enumerate(tiles):
        tile = Image.open(path).convert("RGB").resize((side, side), Image.NEAREST)
        out.paste(tile, (pad + j * (side + pad), head + pad + i * (side + pad)))
out.save("docs/img/cams-scenes.png", optimize=True)
PY
rm -r "$TMP"
echo "wrote docs/img/cams-scenes.png"
