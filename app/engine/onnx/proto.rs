//! The part of ONNX's protobuf schema (`onnx.proto3`) the explorer reads, as prost
//! messages. Fields it does not list are skipped when decoding; subgraphs (the `g` and
//! `graphs` attributes of control-flow ops) among them, so decoding never recurses.

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    /// Sparse initializers are refused; only their presence is read.
    #[prost(bytes = "vec", repeated, tag = "15")]
    pub sparse_initializer: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    #[prost(string, tag = "7")]
    pub domain: String,
    #[prost(message, repeated, tag = "9")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(float, tag = "2")]
    pub f: f32,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    /// Set when the attribute refers to a function's attribute instead of holding a value.
    #[prost(string, tag = "21")]
    pub ref_attr_name: String,
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    #[prost(uint64, repeated, tag = "11")]
    pub uint64_data: Vec<u64>,
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    #[prost(int32, tag = "14")]
    pub data_location: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Dimension {
    #[prost(int64, tag = "1")]
    pub dim_value: i64,
    #[prost(string, tag = "2")]
    pub dim_param: String,
}

/// `TensorProto.DataType` values the explorer reads.
pub mod data_type {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
}

/// `TensorProto.DataLocation`: the data lies in another file.
pub const EXTERNAL: i32 = 1;

/// Messages the decoder may build from one file. Every message decodes to a struct of about
/// 150 bytes, from as little as 2 bytes of input, so a file of empty messages would take 75
/// times its size; real graphs have thousands of nodes, not millions.
pub const MAX_MESSAGES: usize = 1 << 20;

/// Which fields of each message are messages themselves (the ones this schema decodes).
fn nested(level: u8, field: u64) -> Option<u8> {
    const MODEL: u8 = 0;
    const GRAPH: u8 = 1;
    const NODE: u8 = 2;
    const ATTRIBUTE: u8 = 3;
    const OTHER: u8 = 4;
    match (level, field) {
        (MODEL, 7) => Some(GRAPH),
        (MODEL, 8) => Some(OTHER),
        (GRAPH, 1) => Some(NODE),
        (GRAPH, 5 | 11 | 12) => Some(OTHER),
        (NODE, 5) => Some(ATTRIBUTE),
        (ATTRIBUTE, 5) => Some(OTHER),
        _ => None,
    }
}

/// Counts the messages in `bytes` (a `ModelProto`) without decoding them, and refuses a file
/// with more than [`MAX_MESSAGES`]. Malformed wire data is left for the decoder to report.
pub fn check_message_count(bytes: &[u8]) -> Result<(), String> {
    let mut count = 0usize;
    let mut stack: Vec<(&[u8], u8)> = vec![(bytes, 0)];
    while let Some((mut buf, level)) = stack.pop() {
        while !buf.is_empty() {
            let Some((key, rest)) = varint(buf) else { return Ok(()) };
            buf = rest;
            let (field, wire) = (key >> 3, key & 7);
            match wire {
                0 => match varint(buf) {
                    Some((_, rest)) => buf = rest,
                    None => return Ok(()),
                },
                1 if buf.len() >= 8 => buf = &buf[8..],
                5 if buf.len() >= 4 => buf = &buf[4..],
                2 => {
                    let Some((len, rest)) = varint(buf) else { return Ok(()) };
                    let Some(len) = usize::try_from(len).ok().filter(|&l| l <= rest.len()) else { return Ok(()) };
                    let (payload, rest) = rest.split_at(len);
                    buf = rest;
                    if let Some(inner) = nested(level, field) {
                        count += 1;
                        if count > MAX_MESSAGES {
                            return Err(format!(
                                "the file holds more than {MAX_MESSAGES} nodes, tensors and attributes, which is refused"
                            ));
                        }
                        stack.push((payload, inner));
                    }
                }
                _ => return Ok(()),
            }
        }
    }
    Ok(())
}

fn varint(buf: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, &b) in buf.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, &buf[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{MAX_MESSAGES, check_message_count};

    /// ModelProto { graph: GraphProto { node: [empty; n] } }: 2 bytes a node.
    fn empty_nodes(n: usize) -> Vec<u8> {
        let nodes: Vec<u8> = std::iter::repeat_n([0x0a, 0x00], n).flatten().collect();
        let mut model = vec![0x3a];
        let mut len = nodes.len();
        while len >= 0x80 {
            model.push((len as u8) | 0x80);
            len >>= 7;
        }
        model.push(len as u8);
        model.extend(nodes);
        model
    }

    #[test]
    fn a_file_of_empty_nodes_is_refused_before_decoding() {
        // The graph is a message too.
        assert!(check_message_count(&empty_nodes(MAX_MESSAGES - 1)).is_ok());
        let e = check_message_count(&empty_nodes(MAX_MESSAGES)).unwrap_err();
        assert!(e.contains("more than"), "{e}");
    }
}
