"""Reference outputs for the U²-Net parity test (sf3d/tests/u2net.rs), made with ONNX Runtime and Pillow.

Writes to OUT_DIR:
  u2net.onnx, u2netp.onnx  the published architectures (model/u2net.py of the U-2-Net repository) with seeded
                           random weights, laid out as PyTorch's ONNX export lays them out (opset 11: Conv,
                           Relu, MaxPool with ceil_mode, Resize 'linear' / 'pytorch_half_pixel' whose sizes come
                           from Shape/Slice/Concat, Concat, Add, Sigmoid; first output the fused map). u2net has
                           its batch norms folded into the convolutions (an eval-mode export); u2netp keeps
                           BatchNormalization nodes (a training-mode export), so both load paths are covered.
  photo.png                an RGB photo-like image: an object in front of a textured background.
  <v>.input.f32            rembg's network input for photo.png ([3, 320, 320], little-endian f32).
  <v>.pred.f32             ONNX Runtime's first output for that input ([320, 320]).
  <v>.cutout.png           rembg.remove(photo) with rembg's defaults (RGBA).

rembg's steps are those of its U2netSession.predict, BaseSession.normalize and naive_cutout (rembg 2.0.x):
RGB, LANCZOS to 320², divided by the largest byte, ImageNet mean/std; first output min-max normalised, times
255 as uint8, LANCZOS back to the image size; Image.composite(image, transparent, mask).

usage: python3 make_reference.py OUT_DIR [u2net|u2netp ...]   (both when none is named)
"""

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

SIDE = 320
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# (height or "F", in, mid, out) of the eleven residual U-blocks: six encoder stages, five decoder stages.
BLOCKS = {
    "u2net": [(7, 3, 32, 64), (6, 64, 32, 128), (5, 128, 64, 256), (4, 256, 128, 512), ("F", 512, 256, 512),
              ("F", 512, 256, 512), ("F", 1024, 256, 512), (4, 1024, 128, 256), (5, 512, 64, 128),
              (6, 256, 32, 64), (7, 128, 16, 64)],
    "u2netp": [(7, 3, 16, 64), (6, 64, 16, 64), (5, 64, 16, 64), (4, 64, 16, 64), ("F", 64, 16, 64),
               ("F", 64, 16, 64), ("F", 128, 16, 64), (4, 128, 16, 64), (5, 128, 16, 64), (6, 128, 16, 64),
               (7, 128, 16, 64)],
}
SIDES = {"u2net": [64, 64, 128, 256, 512, 512], "u2netp": [64] * 6}


class Builder:
    """Emits nodes and initializers in forward (trace) order."""

    def __init__(self, rng, keep_batch_norm):
        self.rng = rng
        self.keep_bn = keep_batch_norm
        self.nodes, self.inits = [], []
        self.n = 0

    def name(self, prefix):
        self.n += 1
        return f"{prefix}_{self.n}"

    def init(self, array, prefix):
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op, inputs, **attrs):
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x, c_in, c_out, k=3, dilation=1, rebn=True):
        fan_in = c_in * k * k
        gain = 2.0 if rebn else (1.0 if k == 1 else 0.0025)
        w = (self.rng.standard_normal((c_out, c_in, k, k)) * np.sqrt(gain / fan_in)).astype(np.float32)
        b = self.rng.uniform(-0.1, 0.1, c_out).astype(np.float32)
        pad = dilation * (k // 2)
        attrs = dict(dilations=[dilation, dilation], group=1, kernel_shape=[k, k], pads=[pad] * 4, strides=[1, 1])
        if not rebn:
            return self.node("Conv", [x, self.init(w, "w"), self.init(b, "b")], **attrs)
        gamma = self.rng.uniform(0.7, 1.3, c_out).astype(np.float32)
        beta = self.rng.uniform(-0.1, 0.1, c_out).astype(np.float32)
        mean = self.rng.uniform(-0.1, 0.1, c_out).astype(np.float32)
        var = self.rng.uniform(0.6, 1.4, c_out).astype(np.float32)
        if self.keep_bn:
            y = self.node("Conv", [x, self.init(w, "w"), self.init(b, "b")], **attrs)
            y = self.node("BatchNormalization", [y, self.init(gamma, "gamma"), self.init(beta, "beta"),
                                                 self.init(mean, "mean"), self.init(var, "var")], epsilon=1e-5)
        else:
            g = gamma / np.sqrt(var + np.float32(1e-5))
            wf = (w * g[:, None, None, None]).astype(np.float32)
            bf = ((b - mean) * g + beta).astype(np.float32)
            y = self.node("Conv", [x, self.init(wf, "w"), self.init(bf, "b")], **attrs)
        return self.node("Relu", [y])

    def pool(self, x):
        return self.node("MaxPool", [x], ceil_mode=1, kernel_shape=[2, 2], pads=[0, 0, 0, 0], strides=[2, 2])

    def upsample_like(self, src, tar):
        # sizes = concat(shape(src)[0:2], shape(tar)[2:4]), as the tracer records F.upsample(size=tar.shape[2:]).
        i64 = lambda v: self.init(np.array(v, dtype=np.int64), "i")
        head = self.node("Slice", [self.node("Shape", [src]), i64([0]), i64([2]), i64([0])])
        tail = self.node("Slice", [self.node("Shape", [tar]), i64([2]), i64([4]), i64([0])])
        sizes = self.node("Concat", [head, tail], axis=0)
        roi = self.init(np.zeros(0, np.float32), "roi")
        scales = self.init(np.zeros(0, np.float32), "scales")
        return self.node("Resize", [src, roi, scales, sizes], coordinate_transformation_mode="pytorch_half_pixel",
                         cubic_coeff_a=-0.75, mode="linear", nearest_mode="floor")

    def cat(self, xs):
        return self.node("Concat", xs, axis=1)

    def rsu(self, x, block):
        height, c_in, mid, c_out = block
        hxin = self.conv(x, c_in, c_out)
        if height == "F":
            h1 = self.conv(hxin, c_out, mid, dilation=1)
            h2 = self.conv(h1, mid, mid, dilation=2)
            h3 = self.conv(h2, mid, mid, dilation=4)
            h4 = self.conv(h3, mid, mid, dilation=8)
            d3 = self.conv(self.cat([h4, h3]), 2 * mid, mid, dilation=4)
            d2 = self.conv(self.cat([d3, h2]), 2 * mid, mid, dilation=2)
            d1 = self.conv(self.cat([d2, h1]), 2 * mid, c_out, dilation=1)
            return self.node("Add", [d1, hxin])
        levels = [self.conv(hxin, c_out, mid)]
        for _ in range(2, height):
            levels.append(self.conv(self.pool(levels[-1]), mid, mid))
        bottom = self.conv(levels[-1], mid, mid, dilation=2)
        d = self.conv(self.cat([bottom, levels[-1]]), 2 * mid, mid)
        for i, skip in enumerate(reversed(levels[:-1])):
            c = c_out if i == len(levels) - 2 else mid
            d = self.conv(self.cat([self.upsample_like(d, skip), skip]), 2 * mid, c)
        return self.node("Add", [d, hxin])

    def network(self, variant, x):
        blocks = BLOCKS[variant]
        enc = []
        for b in blocks[:6]:
            enc.append(self.rsu(x if not enc else self.pool(enc[-1]), b))
        deeper, dec = enc[5], []
        for b, skip in zip(blocks[6:], reversed(enc[:5])):
            deeper = self.rsu(self.cat([self.upsample_like(deeper, skip), skip]), b)
            dec.append(deeper)
        chans = SIDES[variant]
        d1 = self.conv(dec[4], chans[0], 1, rebn=False)
        sides = [d1]
        for src, c in zip([dec[3], dec[2], dec[1], dec[0], enc[5]], chans[1:]):
            sides.append(self.upsample_like(self.conv(src, c, 1, rebn=False), d1))
        d0 = self.conv(self.cat(sides), 6, 1, k=1, rebn=False)
        outs = [self.node("Sigmoid", [d0])] + [self.node("Sigmoid", [s]) for s in sides]
        return outs


def build(variant, seed, keep_batch_norm):
    b = Builder(np.random.default_rng(seed), keep_batch_norm)
    outs = b.network(variant, "input.1")
    graph = helper.make_graph(
        b.nodes, f"{variant}-random",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, SIDE, SIDE])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, 1, SIDE, SIDE]) for o in outs],
        initializer=b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], producer_name="sf3d-tests")
    model.ir_version = 6
    onnx.checker.check_model(model)
    return model


def photo(width=400, height=300, seed=5):
    """An object (a shaded ellipse with a stripe pattern) in front of a textured, non-uniform background."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    bg = np.stack([
        120 + 60 * np.sin(x / 7.0) * np.cos(y / 11.0),
        100 + 50 * np.sin((x + y) / 13.0),
        80 + 40 * np.cos(x / 5.0 - y / 9.0),
    ], axis=-1) + rng.normal(0, 12, (height, width, 3))
    inside = ((x - 210) / 110) ** 2 + ((y - 160) / 95) ** 2 <= 1.0
    shade = 1.0 - 0.5 * ((x - 180) ** 2 + (y - 120) ** 2) / (150 ** 2)
    obj = np.stack([230 * shade, 60 + 40 * np.sin(y / 4.0), 40 * shade], axis=-1)
    img = np.where(inside[..., None], obj, bg)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def rembg_input(img):
    im = np.array(img.convert("RGB").resize((SIDE, SIDE), Image.Resampling.LANCZOS))
    im = im / max(np.max(im), 1e-6)
    out = np.zeros((SIDE, SIDE, 3))
    for c in range(3):
        out[:, :, c] = (im[:, :, c] - MEAN[c]) / STD[c]
    return np.expand_dims(out.transpose((2, 0, 1)), 0).astype(np.float32)


def rembg_cutout(img, pred):
    mi, ma = np.min(pred), np.max(pred)
    norm = (pred - mi) / (ma - mi)
    mask = Image.fromarray((norm.clip(0, 1) * 255).astype("uint8"), mode="L").resize(img.size, Image.Resampling.LANCZOS)
    return Image.composite(img, Image.new("RGBA", img.size, 0), mask)


def main(out_dir, variants):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image = photo()
    image.save(out / "photo.png")
    # SF3D opens the image as RGBA before rembg sees it.
    rgba = image.convert("RGBA")
    x = rembg_input(rgba)
    wanted = set(variants) or {"u2net", "u2netp"}
    for variant, seed, keep_bn in [("u2net", 11, False), ("u2netp", 12, True)]:
        if variant not in wanted:
            continue
        model = build(variant, seed, keep_bn)
        path = out / f"{variant}.onnx"
        onnx.save(model, path)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        pred = sess.run(None, {sess.get_inputs()[0].name: x})[0][0, 0]
        spread = float(pred.max() - pred.min())
        if spread < 0.05:
            sys.exit(f"{variant}: the random network's output barely varies ({spread}); pick other weights")
        x.astype("<f4").tofile(out / f"{variant}.input.f32")
        pred.astype("<f4").tofile(out / f"{variant}.pred.f32")
        rembg_cutout(rgba, pred).save(out / f"{variant}.cutout.png")
        print(f"{variant}: {len(model.graph.node)} nodes, prediction in [{pred.min():.4f}, {pred.max():.4f}]")


if __name__ == "__main__":
    if len(sys.argv) < 2 or not set(sys.argv[2:]) <= {"u2net", "u2netp"}:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
