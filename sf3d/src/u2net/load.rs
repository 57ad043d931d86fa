//! Maps a decoded ONNX graph onto [`arch::Network`]: the `Conv` nodes in file order onto [`arch::conv_specs`]
//! (shapes, dilations, paddings, strides and groups checked), a `BatchNormalization` that consumes a
//! convolution's output folded into its weights (a training-mode export keeps them; an eval-mode export has
//! folded them already), the bilinear sampling rule from the `Resize`/`Upsample` nodes, and a check that the
//! graph's first output is the sigmoid of the last convolution.

use candle_core::Device;

use super::arch::{self, Conv, ConvSpec, Network, Sampling, Variant};
use super::onnx::{Graph, NodeProto, Weight};
use crate::error::{Error, Result};

/// PyTorch's `BatchNorm2d` epsilon, ONNX's default.
const BN_EPSILON: f32 = 1e-5;

fn bad(graph: &Graph, message: String) -> Error {
    Error::BadFile { path: graph.path.clone(), message }
}

/// The network in `graph`, on `device`: the first of [`Variant::ALL`] whose convolutions all match.
///
/// Errors: [`Error::BadFile`] naming the file and, for the variant whose convolutions matched longest, the first
/// node that does not fit.
pub fn network(graph: &Graph, device: &Device) -> Result<Network> {
    let convs: Vec<&NodeProto> = graph.nodes.iter().filter(|n| n.op_type == "Conv").collect();
    let sampling = sampling(graph)?;
    check_output(graph, convs.last().copied())?;
    let mut best: Option<(usize, String)> = None;
    for variant in Variant::ALL {
        match match_convs(graph, &convs, variant, device) {
            Ok(convs) => return Ok(Network { variant, convs, sampling }),
            Err((matched, why)) => {
                if best.as_ref().is_none_or(|(m, _)| matched > *m) {
                    best = Some((matched, format!("as {}: {why}", variant.name())));
                }
            }
        }
    }
    let why = best.map_or_else(String::new, |(_, w)| w);
    Err(bad(graph, format!("the graph is not U²-Net or U²-NetP ({} Conv nodes; {why})", convs.len())))
}

/// The convolutions of `variant` from the file's `Conv` nodes, each built as soon as it is folded (so the
/// weights exist twice at most, in the file's graph and in the network), or how many matched and why the next
/// did not.
fn match_convs(
    graph: &Graph,
    convs: &[&NodeProto],
    variant: Variant,
    device: &Device,
) -> std::result::Result<Vec<Conv>, (usize, String)> {
    let specs = arch::conv_specs(variant);
    if convs.len() != specs.len() {
        return Err((0, format!("{} Conv nodes expected", specs.len())));
    }
    let mut out = Vec::with_capacity(specs.len());
    for (i, (node, spec)) in convs.iter().zip(&specs).enumerate() {
        let why = |e: String| (i, format!("{}: {e}", node.describe()));
        let (spec, w, b) = conv_weights(graph, node, spec).map_err(why)?;
        out.push(Conv::new(spec, w, b, device).map_err(|e| why(e.to_string()))?);
    }
    Ok(out)
}

fn weight<'g>(graph: &'g Graph, node: &NodeProto, input: usize) -> std::result::Result<&'g Weight, String> {
    let name = node.input.get(input).ok_or_else(|| format!("input {input} is missing"))?;
    graph.weights.get(name).ok_or_else(|| format!("input {name:?} is not a float initializer"))
}

/// One convolution's weights with a following batch norm folded in, after checking its attributes.
fn conv_weights(
    graph: &Graph,
    node: &NodeProto,
    spec: &ConvSpec,
) -> std::result::Result<(ConvSpec, Vec<f32>, Vec<f32>), String> {
    let k = spec.kernel;
    let w = weight(graph, node, 1)?;
    let want = [spec.c_out, spec.c_in, k, k];
    if w.dims != want {
        return Err(format!("weight shape {:?}, expected {want:?}", w.dims));
    }
    let d = spec.dilation as i64;
    let p = spec.padding() as i64;
    let attrs = [
        ("dilations", node.ints("dilations", &[1, 1]), vec![d, d]),
        ("pads", node.ints("pads", &[0, 0, 0, 0]), vec![p; 4]),
        ("strides", node.ints("strides", &[1, 1]), vec![1, 1]),
        ("group", vec![node.int("group", 1)], vec![1]),
    ];
    for (name, have, want) in attrs {
        if have != want {
            return Err(format!("{name} {have:?}, expected {want:?}"));
        }
    }
    let auto_pad = node.string("auto_pad", "NOTSET");
    if auto_pad != "NOTSET" {
        return Err(format!("auto_pad {auto_pad:?}, expected explicit pads"));
    }
    let mut weights = w.values.clone();
    let mut bias = if node.input.len() > 2 && !node.input[2].is_empty() {
        let b = weight(graph, node, 2)?;
        if b.dims != [spec.c_out] {
            return Err(format!("bias shape {:?}, expected [{}]", b.dims, spec.c_out));
        }
        b.values.clone()
    } else {
        vec![0.0; spec.c_out]
    };
    let out = node.output.first().ok_or("no output")?;
    if let Some(bn) = graph.nodes.iter().find(|n| n.op_type == "BatchNormalization" && n.input.first() == Some(out)) {
        let param = |i: usize| -> std::result::Result<&Vec<f32>, String> {
            let t = weight(graph, bn, i).map_err(|e| format!("its batch norm: {e}"))?;
            if t.dims != [spec.c_out] {
                return Err(format!("its batch norm's input {i} has shape {:?}, expected [{}]", t.dims, spec.c_out));
            }
            Ok(&t.values)
        };
        let (scale, shift, mean, var) = (param(1)?, param(2)?, param(3)?, param(4)?);
        let eps = bn.attr("epsilon").map_or(BN_EPSILON, |a| a.f);
        let per_out = spec.c_in * k * k;
        for o in 0..spec.c_out {
            let g = scale[o] / (var[o] + eps).sqrt();
            weights[o * per_out..(o + 1) * per_out].iter_mut().for_each(|v| *v *= g);
            bias[o] = (bias[o] - mean[o]) * g + shift[o];
        }
    }
    Ok((*spec, weights, bias))
}

/// The sampling rule shared by every `Resize` (opset ≥ 10) and `Upsample` (opset ≤ 9) node, which must be
/// bilinear.
fn sampling(graph: &Graph) -> Result<Sampling> {
    let mut found: Option<Sampling> = None;
    for n in &graph.nodes {
        let (mode, s) = match n.op_type.as_str() {
            "Resize" => {
                let ctm = n.string("coordinate_transformation_mode", "half_pixel");
                let s = match ctm.as_str() {
                    "half_pixel" | "pytorch_half_pixel" => Sampling::HalfPixel,
                    "asymmetric" => Sampling::Asymmetric,
                    "align_corners" => Sampling::AlignCorners,
                    other => {
                        return Err(bad(graph, format!("{}: coordinate_transformation_mode {other:?}", n.describe())));
                    }
                };
                (n.string("mode", "nearest"), s)
            }
            "Upsample" => (n.string("mode", "nearest"), Sampling::Asymmetric),
            _ => continue,
        };
        if mode != "linear" && mode != "bilinear" {
            return Err(bad(graph, format!("{}: mode {mode:?}, U²-Net upsamples bilinearly", n.describe())));
        }
        match found {
            Some(f) if f != s => {
                return Err(bad(
                    graph,
                    format!("{}: resize nodes disagree on the sampling ({f:?}, {s:?})", n.describe()),
                ));
            }
            _ => found = Some(s),
        }
    }
    found.ok_or_else(|| bad(graph, "the graph has no Resize or Upsample node; U²-Net upsamples bilinearly".into()))
}

/// The graph's first output must be `Sigmoid` of the last `Conv` (the fused map `d0`).
fn check_output(graph: &Graph, last_conv: Option<&NodeProto>) -> Result<()> {
    let producer = graph.nodes.iter().find(|n| n.output.contains(&graph.output));
    let ok = match (producer, last_conv) {
        (Some(p), Some(c)) => p.op_type == "Sigmoid" && p.input.first() == c.output.first(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(bad(
            graph,
            format!("the graph's first output {:?} is not the sigmoid of its last convolution", graph.output),
        ))
    }
}
