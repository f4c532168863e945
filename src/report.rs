//! The leak inventory: what was masked, by rule and encoding, and for each
//! token identifier how often, when and where. `filter --summary` and
//! `scan --summary` print it as JSON.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::Finding;

/// Default number of distinct token identifiers kept.
pub const DEFAULT_MAX_IDS: usize = 10_000;
/// Sources (files, routes) remembered per identifier.
const MAX_SOURCES: usize = 8;

/// Counts of masked secrets, with a bounded set of token identifiers.
/// When the set is full, the identifier seen least recently is evicted and
/// counted in [`Inventory::evicted`].
#[derive(Debug)]
pub struct Inventory {
    max_ids: usize,
    total: u64,
    by_rule: BTreeMap<String, u64>,
    by_encoding: BTreeMap<&'static str, u64>,
    ids: HashMap<Arc<str>, Entry, foldhash::fast::RandomState>,
    /// Identifiers by the sequence number of their last sighting, oldest
    /// first, for eviction.
    recency: BTreeMap<u64, Arc<str>>,
    seq: u64,
    evicted: u64,
}

#[derive(Debug)]
struct Entry {
    /// The identifier, shared with the map key and the recency index.
    id: Arc<str>,
    rule: Arc<str>,
    count: u64,
    first_seen: SystemTime,
    last_seen: SystemTime,
    /// At most [`MAX_SOURCES`], in the order first seen.
    sources: Vec<Arc<str>>,
    seq: u64,
}

impl Default for Inventory {
    fn default() -> Self {
        Inventory::new(DEFAULT_MAX_IDS)
    }
}

impl Inventory {
    /// Creates an inventory that keeps at most `max_ids` identifiers.
    pub fn new(max_ids: usize) -> Inventory {
        Inventory {
            max_ids: max_ids.max(1),
            total: 0,
            by_rule: BTreeMap::new(),
            by_encoding: BTreeMap::new(),
            ids: HashMap::default(),
            recency: BTreeMap::new(),
            seq: 0,
            evicted: 0,
        }
    }

    /// Counts a finding seen in `source` (a file path, `stdin`, a route).
    pub fn record(&mut self, finding: &Finding, source: &str) {
        self.record_at(finding, source, SystemTime::now());
    }

    /// Counts a finding seen at time `now`.
    pub fn record_at(&mut self, finding: &Finding, source: &str, now: SystemTime) {
        self.record_shared(finding, &Arc::from(source), now);
    }

    /// Counts a finding seen in `source` at time `now`; the source is
    /// shared, so a batch of findings from one source allocates it once.
    pub fn record_shared(&mut self, finding: &Finding, source: &Arc<str>, now: SystemTime) {
        self.total += 1;
        match self.by_rule.get_mut(&*finding.rule) {
            Some(n) => *n += 1,
            None => {
                self.by_rule.insert(finding.rule.to_string(), 1);
            }
        }
        *self
            .by_encoding
            .entry(finding.encoding.as_str())
            .or_default() += 1;
        let Some(id) = &finding.token_id else {
            return;
        };
        if let Some(entry) = self.ids.get_mut(id.as_str()) {
            // The same token leaked again and again is the common case:
            // when it is the latest seen already, its place stays.
            if entry.seq != self.seq {
                self.seq += 1;
                self.recency.remove(&entry.seq);
                entry.seq = self.seq;
                self.recency.insert(self.seq, Arc::clone(&entry.id));
            }
            entry.count += 1;
            entry.last_seen = now;
            if entry.sources.len() < MAX_SOURCES && !entry.sources.contains(source) {
                entry.sources.push(Arc::clone(source));
            }
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        if self.ids.len() >= self.max_ids {
            if let Some((_, oldest)) = self.recency.pop_first() {
                self.ids.remove(&oldest);
                self.evicted += 1;
            }
        }
        let key: Arc<str> = Arc::from(id.as_str());
        self.ids.insert(
            Arc::clone(&key),
            Entry {
                id: Arc::clone(&key),
                rule: Arc::clone(&finding.rule),
                count: 1,
                first_seen: now,
                last_seen: now,
                sources: vec![Arc::clone(source)],
                seq,
            },
        );
        self.recency.insert(seq, key);
    }

    /// Findings counted.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Identifiers dropped to keep the set bounded.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Distinct identifiers kept.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Returns whether no identifier is kept.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Renders the inventory as JSON: totals by rule and encoding, and one object
    /// per identifier, most counted first.
    pub fn to_json(&self) -> Value {
        let mut leaks: Vec<(&Arc<str>, &Entry)> = self.ids.iter().collect();
        leaks.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        let leaks: Vec<Value> = leaks
            .into_iter()
            .map(|(id, e)| {
                json!({
                    "token_id": &**id,
                    "rule": &*e.rule,
                    "count": e.count,
                    "first_seen": humantime::format_rfc3339_seconds(e.first_seen).to_string(),
                    "last_seen": humantime::format_rfc3339_seconds(e.last_seen).to_string(),
                    "sources": e.sources.iter().map(|s| &**s).collect::<Vec<&str>>(),
                })
            })
            .collect();
        json!({
            "findings": self.total,
            "by_rule": self.by_rule,
            "by_encoding": self.by_encoding,
            "leaks": leaks,
            "leaks_evicted": self.evicted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Encoding;

    fn finding(id: Option<&str>) -> Finding {
        Finding {
            rule: crate::RULE_TOKEN.into(),
            encoding: Encoding::Plain,
            offset: 0,
            len: 96,
            token_id: id.map(str::to_string),
        }
    }

    #[test]
    fn counts_by_rule_and_id() {
        let mut inv = Inventory::new(10);
        inv.record(&finding(Some("dt0c01.A")), "a.log");
        inv.record(&finding(Some("dt0c01.A")), "b.log");
        inv.record(&finding(None), "a.log");
        let json = inv.to_json();
        assert_eq!(json["findings"], 3);
        assert_eq!(json["by_rule"][crate::RULE_TOKEN], 3);
        assert_eq!(json["leaks"][0]["count"], 2);
        assert_eq!(json["leaks"][0]["sources"], json!(["a.log", "b.log"]));
    }

    #[test]
    fn million_ids_stay_bounded() {
        let mut inv = Inventory::new(DEFAULT_MAX_IDS);
        let now = SystemTime::now();
        for i in 0..1_000_000u32 {
            inv.record_at(&finding(Some(&format!("dt0c01.{i:024}"))), "s", now);
        }
        assert_eq!(inv.len(), DEFAULT_MAX_IDS);
        assert_eq!(inv.evicted(), 1_000_000 - DEFAULT_MAX_IDS as u64);
        assert_eq!(inv.recency.len(), DEFAULT_MAX_IDS);
        assert_eq!(inv.total(), 1_000_000);
        // The newest identifiers are the ones kept.
        let json = inv.to_json();
        let kept: Vec<&str> = json["leaks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["token_id"].as_str().unwrap())
            .collect();
        assert!(kept.contains(&format!("dt0c01.{:024}", 999_999).as_str()));
        assert!(!kept.contains(&format!("dt0c01.{:024}", 0).as_str()));
    }

    #[test]
    fn evicts_least_recent() {
        let mut inv = Inventory::new(2);
        inv.record(&finding(Some("one")), "s");
        inv.record(&finding(Some("two")), "s");
        inv.record(&finding(Some("one")), "s");
        inv.record(&finding(Some("three")), "s");
        assert_eq!(inv.len(), 2);
        assert_eq!(inv.evicted(), 1);
        let ids: Vec<_> = inv.to_json()["leaks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["token_id"].as_str().unwrap().to_string())
            .collect();
        assert!(ids.contains(&"one".to_string()));
        assert!(ids.contains(&"three".to_string()));
    }
}
