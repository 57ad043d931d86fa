//! The part of the ONNX file format (`onnx.proto`) a U²-Net export uses: a model's graph, its nodes with their
//! attributes, and its initializers (weights) as dense `f32` tensors.
//!
//! The messages below declare only the fields read here, with `onnx.proto`'s field numbers; protobuf decoding
//! skips every other field, so files from any exporter version load. They also encode, which the tests use to
//! write small graphs.

use std::collections::HashMap;
use std::path::Path;

use prost::Message;

use crate::error::{Error, Result};

/// `ModelProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// `ir_version`.
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// `graph`.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// `opset_import`.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
}

/// `OperatorSetIdProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    /// `domain` (empty: the default `ai.onnx` operators).
    #[prost(string, tag = "1")]
    pub domain: String,
    /// `version`.
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// `GraphProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    /// `node`, in topological order.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// `name`.
    #[prost(string, tag = "2")]
    pub name: String,
    /// `initializer`.
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// `input`.
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// `output`.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

/// `NodeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    /// `input` value names.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// `output` value names.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// `name`.
    #[prost(string, tag = "3")]
    pub name: String,
    /// `op_type`.
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// `attribute`.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

/// `AttributeProto` (the scalar, string and list kinds).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    /// `name`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `f`.
    #[prost(float, tag = "2")]
    pub f: f32,
    /// `i`.
    #[prost(int64, tag = "3")]
    pub i: i64,
    /// `s`.
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    /// `floats`.
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    /// `ints`.
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    /// `type` (`AttributeType`: 1 float, 2 int, 3 string, 6 floats, 7 ints).
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

/// `TensorProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// `dims`.
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    /// `data_type` ([`DATA_TYPE_FLOAT`] for weights).
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    /// `float_data` (one of the two places a float tensor's values can be).
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// `int64_data`.
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    /// `name`.
    #[prost(string, tag = "8")]
    pub name: String,
    /// `raw_data`: little-endian values.
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    /// `data_location` (1: the values are in an external file).
    #[prost(int32, tag = "14")]
    pub data_location: i32,
}

/// `ValueInfoProto` (the name; shapes are not needed).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    /// `name`.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `TensorProto.DataType.FLOAT`.
pub const DATA_TYPE_FLOAT: i32 = 1;

/// `TensorProto.DataLocation.EXTERNAL`.
const DATA_LOCATION_EXTERNAL: i32 = 1;

/// Largest ONNX file read: twice rembg's `u2net.onnx` (176 MB) leaves room for other U²-Net exports.
pub const MAX_FILE_BYTES: u64 = 400_000_000;

/// A dense `f32` initializer.
#[derive(Debug, Clone)]
pub struct Weight {
    /// Shape.
    pub dims: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<f32>,
}

/// A decoded ONNX graph: its nodes in file order and its `f32` initializers by name.
#[derive(Debug)]
pub struct Graph {
    /// The file, for error messages.
    pub path: std::path::PathBuf,
    /// Nodes in topological order.
    pub nodes: Vec<NodeProto>,
    /// `f32` initializers by name (other types are kept out: shape constants are not needed).
    pub weights: HashMap<String, Weight>,
    /// The graph's first input.
    pub input: String,
    /// The graph's first output.
    pub output: String,
}

impl Graph {
    /// Reads and decodes `path`.
    ///
    /// Errors: [`Error::Io`] when the file cannot be read; [`Error::BadFile`] (naming the file) when it is larger
    /// than [`MAX_FILE_BYTES`], is not a protobuf `ModelProto`, has no graph, no input or output, or has an
    /// initializer whose values do not match its shape or live in an external file.
    pub fn read(path: &Path) -> Result<Self> {
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_FILE_BYTES {
            return Err(bad(path, format!("{len} bytes is more than the {MAX_FILE_BYTES} a U²-Net file can have")));
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Self::decode(path, &bytes)
    }

    /// Decodes an ONNX model held in memory; `path` names it in errors. Errors as [`Graph::read`].
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Self> {
        let model = ModelProto::decode(bytes)
            .map_err(|e| bad(path, format!("not an ONNX model (protobuf decoding failed: {e})")))?;
        let graph = model.graph.ok_or_else(|| bad(path, "the ONNX model has no graph".into()))?;
        let first = |v: &[ValueInfoProto], what: &str| {
            v.first().map(|i| i.name.clone()).ok_or_else(|| bad(path, format!("the graph has no {what}")))
        };
        let input = first(&graph.input, "input")?;
        let output = first(&graph.output, "output")?;
        let mut weights = HashMap::new();
        for t in graph.initializer {
            if t.data_type != DATA_TYPE_FLOAT {
                continue;
            }
            let name = t.name.clone();
            weights.insert(name, to_weight(path, t)?);
        }
        Ok(Self { path: path.to_path_buf(), nodes: graph.node, weights, input, output })
    }
}

fn bad(path: &Path, message: String) -> Error {
    Error::BadFile { path: path.to_path_buf(), message }
}

/// A float initializer's values, from `raw_data` or `float_data`, checked against its shape.
fn to_weight(path: &Path, t: TensorProto) -> Result<Weight> {
    if t.data_location == DATA_LOCATION_EXTERNAL {
        return Err(bad(path, format!("initializer {:?} keeps its values in an external file", t.name)));
    }
    let dims = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| bad(path, format!("initializer {:?} has a negative dimension in {:?}", t.name, t.dims)))?;
    let count = dims.iter().try_fold(1_usize, |n, &d| n.checked_mul(d));
    let values = if t.raw_data.is_empty() {
        t.float_data
    } else {
        t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    };
    if count != Some(values.len()) || (!t.raw_data.is_empty() && !t.raw_data.len().is_multiple_of(4)) {
        return Err(bad(path, format!("initializer {:?} of shape {:?} holds {} values", t.name, t.dims, values.len())));
    }
    Ok(Weight { dims, values })
}

impl NodeProto {
    /// The attribute `name`, if present.
    pub fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.attribute.iter().find(|a| a.name == name)
    }

    /// An integer-list attribute, or `default` when absent.
    pub fn ints(&self, name: &str, default: &[i64]) -> Vec<i64> {
        self.attr(name).map_or_else(|| default.to_vec(), |a| a.ints.clone())
    }

    /// An integer attribute, or `default` when absent.
    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.attr(name).map_or(default, |a| a.i)
    }

    /// A string attribute, or `default` when absent.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.attr(name).map_or_else(|| default.to_string(), |a| String::from_utf8_lossy(&a.s).into_owned())
    }

    /// A node description for error messages: its name (or op type) and its first output.
    pub fn describe(&self) -> String {
        let out = self.output.first().map_or("", String::as_str);
        if self.name.is_empty() {
            format!("{} node producing {out:?}", self.op_type)
        } else {
            format!("{} node {:?}", self.op_type, self.name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weight(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
        TensorProto {
            dims: dims.to_vec(),
            data_type: DATA_TYPE_FLOAT,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            name: name.into(),
            ..Default::default()
        }
    }

    fn model(initializer: Vec<TensorProto>) -> Vec<u8> {
        ModelProto {
            ir_version: 6,
            graph: Some(GraphProto {
                node: vec![NodeProto {
                    op_type: "Relu".into(),
                    input: vec!["x".into()],
                    output: vec!["y".into()],
                    ..Default::default()
                }],
                initializer,
                input: vec![ValueInfoProto { name: "x".into() }],
                output: vec![ValueInfoProto { name: "y".into() }],
                ..Default::default()
            }),
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 11 }],
        }
        .encode_to_vec()
    }

    #[test]
    fn decodes_raw_and_listed_float_initializers() {
        let listed = TensorProto {
            dims: vec![3],
            data_type: DATA_TYPE_FLOAT,
            float_data: vec![4.0, 5.0, 6.0],
            name: "b".into(),
            ..Default::default()
        };
        let shape =
            TensorProto { dims: vec![1], data_type: 7, int64_data: vec![2], name: "s".into(), ..Default::default() };
        let g =
            Graph::decode(Path::new("m.onnx"), &model(vec![weight("a", &[2, 1], &[1.0, 2.0]), listed, shape])).unwrap();
        assert_eq!((g.input.as_str(), g.output.as_str()), ("x", "y"));
        assert_eq!(g.weights["a"].dims, vec![2, 1]);
        assert_eq!(g.weights["a"].values, vec![1.0, 2.0]);
        assert_eq!(g.weights["b"].values, vec![4.0, 5.0, 6.0]);
        assert!(!g.weights.contains_key("s"), "non-float initializers are not weights");
        assert_eq!(g.nodes[0].op_type, "Relu");
    }

    #[test]
    fn garbage_truncated_and_inconsistent_files_are_clear_errors() {
        let path = Path::new("broken.onnx");
        let good = model(vec![weight("a", &[4, 4], &[0.5; 16])]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("garbage", b"\xff\xff\xff\xff this is not protobuf".to_vec()),
            ("truncated", good[..good.len() - 9].to_vec()),
            ("shape mismatch", model(vec![weight("a", &[4, 5], &[0.5; 16])])),
            ("empty", Vec::new()),
        ];
        for (what, bytes) in cases {
            let err = Graph::decode(path, &bytes).expect_err(what).to_string();
            assert!(err.contains("broken.onnx"), "{what}: {err}");
            println!("{what}: {err}");
        }
    }

    #[test]
    fn a_missing_or_oversized_file_is_refused() {
        let err = Graph::read(Path::new("/nonexistent/u2net.onnx")).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/u2net.onnx"), "{err}");
    }
}
