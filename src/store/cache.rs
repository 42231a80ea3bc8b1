//! The configuration cache that keeps database reads off the delivery hot path.
//!
//! Every configuration write empties the cache after its commit and bumps the generation; a
//! reader that loaded a value under an older generation does not keep it, so a value read
//! before a concurrent write can never outlive that write. With SQLite this process is the
//! only writer, so the cache is exact. With PostgreSQL other nodes write too: their commits
//! reach this node as notifications that empty the cache the same way (and while the
//! notification channel is down, the PostgreSQL store bypasses the cache).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::domain::{Channel, ChannelId};
use crate::store::{ChannelRef, Routing, StoreError};

/// Routing per channel, and the fixed facts of a channel by Meta phone_number_id and by id.
#[derive(Default)]
pub struct ConfigCache {
    generation: AtomicU64,
    routing: RwLock<HashMap<ChannelId, Arc<Routing>>>,
    channels: RwLock<HashMap<String, ChannelRef>>,
    channels_by_id: RwLock<HashMap<ChannelId, ChannelRef>>,
}

impl ConfigCache {
    /// The generation to pass to [`ConfigCache::remember_routing`] after a read.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Forgets every cached routing; called after each committed configuration write.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.routing
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The cached routing of `channel`, if any.
    fn routing(&self, channel: &ChannelId) -> Option<Arc<Routing>> {
        let map = self.routing.read().unwrap_or_else(|p| p.into_inner());
        map.get(channel).cloned()
    }

    /// Keeps `routing` if no configuration write happened since `generation` was read.
    fn remember_routing(
        &self,
        channel: &ChannelId,
        routing: Routing,
        generation: u64,
    ) -> Arc<Routing> {
        let routing = Arc::new(routing);
        let mut map = self.routing.write().unwrap_or_else(|p| p.into_inner());
        if self.generation() == generation {
            map.insert(channel.clone(), Arc::clone(&routing));
        }
        routing
    }

    /// The routing of `channel` from memory, else from `load` (then kept, unless a
    /// configuration write happened meanwhile). With `coherent` false (another node's
    /// writes cannot reach this cache right now), memory is neither read nor filled.
    pub async fn routing_or_load(
        &self,
        channel: &ChannelId,
        coherent: bool,
        load: impl std::future::Future<Output = Result<Option<Routing>, StoreError>>,
    ) -> Result<Option<Arc<Routing>>, StoreError> {
        if coherent {
            if let Some(hit) = self.routing(channel) {
                return Ok(Some(hit));
            }
        }
        let generation = self.generation();
        let loaded = load.await?;
        Ok(loaded.map(|routing| match coherent {
            true => self.remember_routing(channel, routing, generation),
            false => Arc::new(routing),
        }))
    }

    /// The channel Meta knows by `phone_number_id` from memory, else from `load` (then
    /// remembered: a channel and its ids never change).
    pub async fn channel_by_phone_number_id_or_load(
        &self,
        phone_number_id: &str,
        load: impl std::future::Future<Output = Result<Option<Channel>, StoreError>>,
    ) -> Result<Option<ChannelRef>, StoreError> {
        fixed_or_load(&self.channels, phone_number_id, str::to_owned, load).await
    }

    /// The fixed facts of a channel from memory, else from `load` (then remembered).
    pub async fn channel_ref_or_load(
        &self,
        id: &ChannelId,
        load: impl std::future::Future<Output = Result<Option<Channel>, StoreError>>,
    ) -> Result<Option<ChannelRef>, StoreError> {
        fixed_or_load(&self.channels_by_id, id, ChannelId::clone, load).await
    }
}

/// A channel's fixed facts under `key` in `map`, else from `load` (then remembered under
/// `owned(key)`; no generation check: they never change once created). A hit allocates
/// nothing: ingest asks this for every event.
async fn fixed_or_load<K, Q>(
    map: &RwLock<HashMap<K, ChannelRef>>,
    key: &Q,
    owned: impl FnOnce(&Q) -> K,
    load: impl std::future::Future<Output = Result<Option<Channel>, StoreError>>,
) -> Result<Option<ChannelRef>, StoreError>
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    let hit = map
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(key)
        .cloned();
    if hit.is_some() {
        return Ok(hit);
    }
    let found = load.await?.map(ChannelRef::from);
    if let Some(reference) = &found {
        map.write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(owned(key), reference.clone());
    }
    Ok(found)
}
