//! Decompressed evaluation keys in memory, least recently used evicted first, within a byte
//! budget.
//!
//! A key is ~120 MB once decompressed (Fourier BSK + KSK at N = 2048) and takes seconds to
//! decompress, so a server keeps the keys its clients use and drops the others; a dropped key
//! is decompressed again from the keys directory when its client comes back. An evicted key
//! still used by a request in flight lives until that request ends.

use crate::store::KeyId;
use qfhe_fhe_runtime::Server;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

struct Entry {
    server: Arc<Server>,
    token_hash: [u8; 32],
    bytes: u64,
    last_used: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<KeyId, Entry>,
    clock: u64,
    used: u64,
}

/// The cache.
pub struct KeyCache {
    budget: u64,
    inner: Mutex<Inner>,
}

impl KeyCache {
    /// A cache of at most `budget` bytes of keys.
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the map consistent (every update is one
        // insert or remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The budget, bytes.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// The key's server and token hash, marking it used.
    pub fn get(&self, id: &KeyId) -> Option<(Arc<Server>, [u8; 32])> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        inner.entries.get_mut(id).map(|e| {
            e.last_used = now;
            (e.server.clone(), e.token_hash)
        })
    }

    /// Insert a key, evicting the least recently used ones until it fits. A key larger than
    /// the whole budget is not kept.
    pub fn insert(&self, id: KeyId, server: Arc<Server>, token_hash: [u8; 32]) {
        let bytes = server.key().size_bytes() as u64;
        if bytes > self.budget {
            return;
        }
        let mut inner = self.lock();
        if let Some(old) = inner.entries.remove(&id) {
            inner.used -= old.bytes;
        }
        while inner.used + bytes > self.budget {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(e) = inner.entries.remove(&oldest) {
                inner.used -= e.bytes;
            }
        }
        inner.clock += 1;
        let last_used = inner.clock;
        inner.used += bytes;
        inner.entries.insert(
            id,
            Entry {
                server,
                token_hash,
                bytes,
                last_used,
            },
        );
    }

    /// Drop a key.
    pub fn remove(&self, id: &KeyId) {
        let mut inner = self.lock();
        if let Some(e) = inner.entries.remove(id) {
            inner.used -= e.bytes;
        }
    }

    /// Keys held and the bytes they take.
    pub fn usage(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.entries.len(), inner.used)
    }
}
