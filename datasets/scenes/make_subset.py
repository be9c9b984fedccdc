#!/usr/bin/env python3
"""Builds the shipped subset of the `scenes` benchmark (run once; output committed).

Objects: Fashion-MNIST (MIT licence, Zalando Research), from the Debian package
`dataset-fashion-mnist`:
    apt-get download dataset-fashion-mnist && dpkg -x dataset-fashion-mnist_*.deb x
    python3 make_subset.py x/usr/share/datasets/fashion-mnist SKIMAGE_DATA_DIR
The first 600 images of each class of the train file go to objects/train_<k>.png and the
first 100 of each class of the t10k file to objects/val_<k>.png: atlases of 28x28 grey
tiles, row-major, 25 tiles per row (train) or 10 (val). Train and val never share an object.

Textures: CC0 / public-domain photos bundled with scikit-image 0.26.0
(`pip download --no-deps scikit-image==0.26.0`, files under skimage/data/), downscaled to
at most 256 px on the long side; licences in README.md.
"""
import gzip, struct, sys, os
from PIL import Image

def idx(path):
    with gzip.open(path, 'rb') as f:
        data = f.read()
    magic, n = struct.unpack('>II', data[:8])
    if magic == 2051:
        rows, cols = struct.unpack('>II', data[8:16])
        return [data[16 + i * rows * cols:16 + (i + 1) * rows * cols] for i in range(n)]
    return list(data[8:8 + n])

def atlas(tiles, per_row, path):
    rows = (len(tiles) + per_row - 1) // per_row
    img = Image.new('L', (per_row * 28, rows * 28))
    for i, t in enumerate(tiles):
        img.paste(Image.frombytes('L', (28, 28), t), ((i % per_row) * 28, (i // per_row) * 28))
    img.save(path, optimize=True)

def main():
    fm, sk = sys.argv[1], sys.argv[2]
    for split, prefix, count, per_row in [('train', 'train', 600, 25), ('val', 't10k', 100, 10)]:
        images = idx(os.path.join(fm, f'{prefix}-images-idx3-ubyte.gz'))
        labels = idx(os.path.join(fm, f'{prefix}-labels-idx1-ubyte.gz'))
        for k in range(10):
            tiles = [im for im, l in zip(images, labels) if l == k][:count]
            assert len(tiles) == count
            atlas(tiles, per_row, f'objects/{split}_{k}.png')
    for name in ['brick.png', 'grass.png', 'gravel.png', 'coffee.png', 'rocket.jpg']:
        im = Image.open(os.path.join(sk, name)).convert('RGB')
        im.thumbnail((256, 256), Image.LANCZOS)
        im.save('textures/' + name.rsplit('.', 1)[0] + '.jpg', quality=90)

if __name__ == '__main__':
    main()
