//! The waiting room: sequences not running yet, served fairly across clients.
//!
//! Preempted sequences come first (they were admitted once and their client is already
//! reading). New ones are grouped by their fairness key (the provider passes the user id; the
//! engine knows it only as an opaque string), and the next one admitted is the oldest request of
//! the key served least recently: one client's twenty requests do not keep another's single
//! request waiting behind all of them.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::sequence::Sequence;

/// Keys remembered as served before old ones are forgotten (bounds memory with many clients).
const MAX_REMEMBERED_KEYS: usize = 4096;

/// Sequences waiting to (re)start.
#[derive(Debug, Default)]
pub(crate) struct FairQueue {
    /// Preempted sequences, oldest admission first.
    preempted: VecDeque<Sequence>,
    /// New sequences by fairness key, in arrival order.
    by_key: HashMap<Arc<str>, VecDeque<Sequence>>,
    /// When each key was last served (a tick of `clock`); unknown keys count as never.
    last_served: HashMap<Arc<str>, u64>,
    /// Orders admissions.
    clock: u64,
    /// New sequences waiting (not counting preempted ones).
    new_count: usize,
}

impl FairQueue {
    /// Sequences waiting, preempted ones included.
    pub(crate) fn len(&self) -> usize {
        self.preempted.len() + self.new_count
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a new sequence behind the others of its key.
    pub(crate) fn push(&mut self, sequence: Sequence) {
        self.new_count += 1;
        self.by_key
            .entry(sequence.fairness_key.clone())
            .or_default()
            .push_back(sequence);
    }

    /// Puts a preempted sequence back, ahead of every new one (kept in admission order).
    pub(crate) fn push_preempted(&mut self, sequence: Sequence) {
        let at = self
            .preempted
            .iter()
            .position(|s| s.admission > sequence.admission)
            .unwrap_or(self.preempted.len());
        self.preempted.insert(at, sequence);
    }

    /// The key whose turn it is: least recently served, then oldest waiting request.
    fn next_key(&self) -> Option<Arc<str>> {
        self.by_key
            .iter()
            .filter_map(|(key, waiting)| {
                let head = waiting.front()?;
                let served = self.last_served.get(key).copied().unwrap_or(0);
                Some(((served, head.id), key))
            })
            .min_by_key(|(order, _)| *order)
            .map(|(_, key)| key.clone())
    }

    /// Takes the sequence that should start next. Pair with [`FairQueue::served`] once it
    /// starts, or [`FairQueue::put_back`] if it cannot.
    pub(crate) fn pop(&mut self) -> Option<Sequence> {
        if let Some(sequence) = self.preempted.pop_front() {
            return Some(sequence);
        }
        let key = self.next_key()?;
        let waiting = self.by_key.get_mut(&key)?;
        let sequence = waiting.pop_front();
        if waiting.is_empty() {
            self.by_key.remove(&key);
        }
        if sequence.is_some() {
            self.new_count -= 1;
        }
        sequence
    }

    /// Returns a sequence taken by [`FairQueue::pop`] that could not start, to the head of
    /// its line.
    pub(crate) fn put_back(&mut self, sequence: Sequence) {
        if sequence.admission != 0 {
            self.preempted.push_front(sequence);
        } else {
            self.new_count += 1;
            self.by_key
                .entry(sequence.fairness_key.clone())
                .or_default()
                .push_front(sequence);
        }
    }

    /// Records that a sequence of `key` started now.
    pub(crate) fn served(&mut self, key: &Arc<str>) {
        self.clock += 1;
        if self.last_served.len() >= MAX_REMEMBERED_KEYS && !self.last_served.contains_key(key) {
            // Forget the keys served longest ago (they lose nothing: unknown counts as never).
            let mut ages: Vec<u64> = self.last_served.values().copied().collect();
            let cut = ages.len() / 2;
            ages.select_nth_unstable(cut);
            let threshold = ages[cut];
            self.last_served.retain(|_, &mut served| served > threshold);
        }
        self.last_served.insert(key.clone(), self.clock);
    }

    /// Removes every waiting sequence for which `drop` says so, and returns them.
    pub(crate) fn remove_where(&mut self, mut drop: impl FnMut(&Sequence) -> bool) -> Vec<Sequence> {
        let mut removed = Vec::new();
        let mut keep = VecDeque::with_capacity(self.preempted.len());
        for sequence in self.preempted.drain(..) {
            if drop(&sequence) {
                removed.push(sequence);
            } else {
                keep.push_back(sequence);
            }
        }
        self.preempted = keep;
        for waiting in self.by_key.values_mut() {
            let mut keep = VecDeque::with_capacity(waiting.len());
            for sequence in waiting.drain(..) {
                if drop(&sequence) {
                    self.new_count -= 1;
                    removed.push(sequence);
                } else {
                    keep.push_back(sequence);
                }
            }
            *waiting = keep;
        }
        self.by_key.retain(|_, waiting| !waiting.is_empty());
        removed
    }
}
