//! Parameters rearranged for a kernel (the direct convolution's live-tap weights), kept
//! between calls while no parameter changes: a forward pass at batch 64 otherwise spends
//! a tenth of its time rearranging ResNet-18's weights, and a sweep step rearranges them
//! once per pass and batch although they change once per step.
//!
//! Entries are keyed by the parameter tensor's id and valid for one parameter generation.
//! Every in-place change to a parameter ends with [`params_changed`], which starts a new
//! generation; `clippy.toml` forbids `Var::set` and in-place ops outside the few places
//! that call it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use candle_core::TensorId;

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Memory the kept entries may take; past it they are dropped and the cache starts over.
const BUDGET_BYTES: usize = 512 << 20;

/// A parameter and how it is rearranged (the kernel's own description, e.g. its live taps).
type Key = (TensorId, Vec<usize>);

#[derive(Default)]
struct Store {
    generation: u64,
    bytes: usize,
    entries: HashMap<Key, Arc<Vec<f32>>>,
}

static STORE: LazyLock<Mutex<Store>> = LazyLock::new(Mutex::default);

/// Tells the kernels that some parameter's values changed in place (call it after the change).
pub fn params_changed() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// `build()`, the parameter `id` rearranged as `tag` describes, computed once per parameter
/// generation; built afresh each time for tensors that are not parameters (`id` is `None`).
pub(super) fn prepared(id: Option<TensorId>, tag: Vec<usize>, build: impl FnOnce() -> Vec<f32>) -> Arc<Vec<f32>> {
    let Some(id) = id else { return Arc::new(build()) };
    let generation = GENERATION.load(Ordering::SeqCst);
    let key = (id, tag);
    {
        let mut store = STORE.lock().unwrap_or_else(PoisonError::into_inner);
        if store.generation != generation {
            *store = Store { generation, ..Store::default() };
        }
        if let Some(hit) = store.entries.get(&key) {
            return hit.clone();
        }
    }
    // Built without the lock: `build` may run rayon tasks, and a worker thread waiting on
    // them can be handed another convolution that would then wait on this lock.
    let value = Arc::new(build());
    let bytes = value.len() * size_of::<f32>();
    let mut store = STORE.lock().unwrap_or_else(PoisonError::into_inner);
    // A change during the build may have come before or after it read the parameter.
    if store.generation != generation || GENERATION.load(Ordering::SeqCst) != generation || bytes > BUDGET_BYTES {
        return value;
    }
    if store.bytes + bytes > BUDGET_BYTES {
        *store = Store { generation, ..Store::default() };
    }
    store.bytes += bytes;
    store.entries.insert(key, value.clone());
    value
}
