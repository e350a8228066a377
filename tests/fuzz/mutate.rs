//! Seeded mutations of valid files: what a damaged download, a lying header or a hostile
//! author produces. Each input is a function of (seed, target, iteration), so any failure
//! reproduces from the numbers the harness prints.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// Lengths and counts a lying header would hold.
const LYING_U32: [u32; 8] = [0, 1, 0x7f, 0xff, 0x1_0000, 0x7fff_ffff, 0x8000_0000, u32::MAX];
const LYING_U64: [u64; 6] = [0, 1 << 32, 1 << 40, i64::MAX as u64, u64::MAX, 0x8000_0000_0000_0000];
/// Numbers a hostile card or results file would hold.
const JSON_NUMBERS: [&str; 12] =
    ["0", "-1", "1e300", "-1e300", "1e-300", "18446744073709551615", "1e30", "0.5", "3", "65536", "NaN", "1e400"];

pub struct Mutator {
    rng: ChaCha8Rng,
}

impl Mutator {
    pub fn new(seed: u64, target: &str, iteration: u64) -> Self {
        let t = target.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x1_0000_01b3));
        Self { rng: ChaCha8Rng::seed_from_u64(seed ^ t ^ iteration.wrapping_mul(0x9e37_79b9_7f4a_7c15)) }
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { self.rng.random_range(0..n) }
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    /// One to three byte-level mutations: truncation, bit flips, odd bytes, lying 32- and
    /// 64-bit lengths (both byte orders), a duplicated or deleted chunk.
    pub fn bytes(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..=self.below(3) {
            let len = v.len();
            match self.below(7) {
                0 => v.truncate(self.below(len + 1)),
                1 => {
                    for _ in 0..=self.below(8) {
                        if len > 0 {
                            let i = self.below(len);
                            v[i] ^= 1 << self.below(8);
                        }
                    }
                }
                2 if len > 0 => {
                    let i = self.below(len);
                    v[i] = [0u8, 1, 0x7f, 0x80, 0xff][self.below(5)];
                }
                3 if len >= 4 => {
                    let (i, x) = (self.below(len - 3), LYING_U32[self.below(LYING_U32.len())]);
                    let b = if self.chance(0.5) { x.to_le_bytes() } else { x.to_be_bytes() };
                    v[i..i + 4].copy_from_slice(&b);
                }
                4 if len >= 8 => {
                    let (i, x) = (self.below(len - 7), LYING_U64[self.below(LYING_U64.len())]);
                    v[i..i + 8].copy_from_slice(&x.to_le_bytes());
                }
                5 if len > 0 => {
                    let start = self.below(len);
                    let end = (start + 1 + self.below(4096)).min(len);
                    let chunk = v[start..end].to_vec();
                    let at = self.below(len + 1);
                    v.splice(at..at, chunk);
                }
                6 if len > 0 => {
                    let start = self.below(len);
                    let end = (start + 1 + self.below(256)).min(len);
                    v.drain(start..end);
                }
                _ => {}
            }
        }
        v
    }

    /// A JSON document with one value replaced (by a hostile number, a wrong type, deep
    /// nesting), a key removed, or an array shortened; sometimes byte-mutated after.
    pub fn json(&mut self, seed: &[u8]) -> Vec<u8> {
        let Ok(mut doc) = serde_json::from_slice::<Value>(seed) else { return self.bytes(seed) };
        let mut paths = Vec::new();
        collect(&doc, &mut Vec::new(), &mut paths);
        let mut text = None;
        if let Some(path) = paths.get(self.below(paths.len())).cloned() {
            let slot = locate(&mut doc, &path);
            match self.below(6) {
                0 | 1 => {
                    // Replaced in the text, since 1e400 and NaN are not JSON values.
                    let marker = "\"__fuzz__\"";
                    *slot = Value::String("__fuzz__".into());
                    let n = JSON_NUMBERS[self.below(JSON_NUMBERS.len())];
                    text = Some(doc.to_string().replacen(marker, n, 1));
                }
                2 => {
                    *slot = [Value::Null, Value::Bool(true), Value::String(String::new()), Value::Array(vec![])]
                        [self.below(4)]
                    .clone()
                }
                3 => {
                    if let Value::Array(a) = slot {
                        let keep = self.below(a.len() + 1);
                        a.truncate(keep);
                    } else {
                        *slot = Value::Object(Default::default());
                    }
                }
                4 => {
                    let depth = [100, 10_000, 200_000][self.below(3)];
                    let marker = "\"__fuzz__\"";
                    *slot = Value::String("__fuzz__".into());
                    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
                    text = Some(doc.to_string().replacen(marker, &nested, 1));
                }
                _ => remove(&mut doc, &path),
            }
        }
        let out = text.unwrap_or_else(|| doc.to_string()).into_bytes();
        if self.chance(0.2) { self.bytes(&out) } else { out }
    }
}

#[derive(Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn collect(v: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    if !at.is_empty() {
        out.push(at.clone());
    }
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                at.push(Step::Key(k.clone()));
                collect(child, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            // Arrays of numbers (results) are long: a few of their entries stand for all.
            for (i, child) in a.iter().enumerate().take(8) {
                at.push(Step::Index(i));
                collect(child, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn locate<'a>(v: &'a mut Value, path: &[Step]) -> &'a mut Value {
    path.iter().fold(v, |v, s| match s {
        Step::Key(k) => &mut v[k.as_str()],
        Step::Index(i) => &mut v[*i],
    })
}

fn remove(doc: &mut Value, path: &[Step]) {
    let Some((last, parent)) = path.split_last() else { return };
    match (locate(doc, parent), last) {
        (Value::Object(m), Step::Key(k)) => {
            m.remove(k);
        }
        (Value::Array(a), Step::Index(i)) if *i < a.len() => {
            a.remove(*i);
        }
        _ => {}
    }
}
