//! Model check of the sync engine: random interleavings of edits, creates and deletes on both
//! sides, sync runs, and crashes (a run that applies only the first k ops, then dies), against
//! a small in-memory world (a remote map, a CRM map, the bases) and a simple `execute_in_memory`
//! that applies plans the way `execute` must.
//!
//! After every run, each entity whose item completed is checked against an oracle of the merge
//! rules evaluated on plain values; after a final crash-free sync the world must be quiescent
//! (another sync does nothing) and: no person or card is duplicated, nothing deleted comes back,
//! and in two-way sync the two sides agree.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use cardbridge::sync::fields::{names, FieldMap, FieldValue};
use cardbridge::sync::merge::Policy;
use cardbridge::sync::reconcile::{
    reconcile, Base, CrmPerson, CrmState, Direction, FieldDirection, FieldDirections, ItemInput,
    LinkCandidate, Op, PersonMark, RemoteItem, RemoteMark, RemoteState, Rule, Track,
};
use chrono::{TimeZone, Utc};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Card {
    fields: FieldMap,
    etag: u64,
    rev: i64,
}

#[derive(Debug, Clone)]
struct Person {
    fields: FieldMap,
    version: u64,
    update_time: i64,
}

/// The oracle's key: a text field, or one element of the email set.
type Key = String;
type Values = BTreeMap<Key, String>;

#[derive(Debug, Default)]
struct World {
    remote: BTreeMap<String, Card>,
    crm: BTreeMap<u64, Person>,
    bases: BTreeMap<String, Base>,
    next_pid: u64,
    next_etag: u64,
    next_uid: u64,
    clock: i64,
    conflicts: usize,
    /// Entities (identity emails) whose linked card the user deleted.
    remote_deleted: BTreeSet<String>,
    /// Entities whose linked person the user deleted → remote edits since.
    crm_deleted: BTreeMap<String, bool>,
    /// The oracle's agreed values per entity (the card's values after its last completed sync).
    agreed: BTreeMap<String, Values>,
    /// Entities whose person the user edited since the entity's last completed sync.
    crm_edited: BTreeSet<String>,
    /// Entities whose person the sync created (only those may be deleted by it).
    sync_created: BTreeSet<String>,
    /// Deletions the sync must never make.
    violations: Vec<String>,
    /// How often each rule fired and how many runs crashed (the coverage test reads them).
    rules: BTreeMap<Rule, usize>,
    crashes: usize,
    /// The connection's field directions.
    mapping: FieldDirections,
}

struct Crash;

/// The model's hidden contact identity: a field the engine syncs like any other but never
/// uses to link (linking goes by email only; some contacts have none).
const ENTITY: &str = "x_entity";

fn identity(fields: &FieldMap) -> Option<String> {
    Some(fields.text(ENTITY).to_owned()).filter(|s| !s.is_empty())
}

fn fingerprint(fields: &FieldMap) -> String {
    format!("{fields:?}")
}

fn time(t: i64) -> Option<chrono::DateTime<Utc>> {
    Utc.timestamp_opt(t, 0).single()
}

fn values(fields: &FieldMap) -> Values {
    let mut v = Values::new();
    for f in [names::NAME, names::NOTES] {
        if !fields.text(f).is_empty() {
            v.insert(f.to_owned(), fields.text(f).to_owned());
        }
    }
    for (k, e) in fields.elements(names::EMAILS) {
        v.insert(format!("emails/{k}"), e);
    }
    v
}

impl World {
    fn tick(&mut self) -> i64 {
        self.clock += 1;
        self.clock
    }

    fn base_of_person(&self, pid: u64) -> Option<(&String, &Base)> {
        self.bases
            .iter()
            .find(|(_, b)| b.person.is_some_and(|p| p.person_id == pid))
    }

    fn card_by_identity(&self, id: &str) -> Vec<&String> {
        self.remote
            .iter()
            .filter(|(_, c)| identity(&c.fields).as_deref() == Some(id))
            .map(|(u, _)| u)
            .collect()
    }

    fn person_by_identity(&self, id: &str) -> Vec<u64> {
        self.crm
            .iter()
            .filter(|(_, p)| identity(&p.fields).as_deref() == Some(id))
            .map(|(p, _)| *p)
            .collect()
    }

    fn linked_uid(&self, uid: &str) -> bool {
        self.bases
            .get(uid)
            .is_some_and(|b| b.person.is_some() && b.remote.is_some())
    }

    /// The person `execute` would offer for a card with no person: the one whose push made
    /// this card, else an unreferenced person sharing an email.
    fn candidate(&self, uid: &str, card: &Card) -> Option<LinkCandidate> {
        let referenced = |pid: u64| self.base_of_person(pid).is_some();
        let by_uid = uid
            .strip_prefix('p')
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|pid| self.crm.contains_key(pid) && !referenced(*pid));
        let emails = card.fields.elements(names::EMAILS);
        let pid = by_uid.or_else(|| {
            self.crm
                .iter()
                .find(|(pid, p)| {
                    !referenced(**pid)
                        && p.fields
                            .elements(names::EMAILS)
                            .keys()
                            .any(|k| emails.contains_key(k))
                })
                .map(|(pid, _)| *pid)
        })?;
        let p = &self.crm[&pid];
        Some(LinkCandidate {
            person_id: pid,
            fields: p.fields.clone(),
            version: p.version,
            update_time: time(p.update_time),
        })
    }

    fn person_state(&self, pid: u64) -> CrmState {
        match self.crm.get(&pid) {
            Some(p) => CrmState::Present(CrmPerson {
                person_id: pid,
                fields: p.fields.clone(),
                version: p.version,
                update_time: time(p.update_time),
                editable: true,
            }),
            None => CrmState::Deleted { person_id: pid },
        }
    }

    /// One sync run: every card and base, then every CRM person no base knows. Returns the
    /// identities whose items completed; `Err` when the crash budget ran out.
    fn sync(
        &mut self,
        direction: Direction,
        policy: Policy,
        budget: &mut Option<usize>,
        completed: &mut BTreeSet<String>,
    ) -> Result<usize, Crash> {
        let mut non_trivial = 0;
        let uids: BTreeSet<String> = self
            .remote
            .keys()
            .chain(self.bases.keys())
            .cloned()
            .collect();
        for uid in uids {
            let base = self.bases.get(&uid).cloned();
            let card = self.remote.get(&uid).cloned();
            let remote = match (&card, &base) {
                (Some(c), _) => RemoteState::Present(RemoteItem {
                    fields: c.fields.clone(),
                    card_fingerprint: fingerprint(&c.fields),
                    etag: Some(c.etag.to_string()),
                    rev: time(c.rev),
                }),
                (None, Some(b)) if b.remote.is_some() => RemoteState::Deleted,
                (None, _) => RemoteState::NotReported,
            };
            let crm = match base.as_ref().and_then(|b| b.person) {
                Some(pm) => self.person_state(pm.person_id),
                None => CrmState::Absent,
            };
            let link_candidate = match (&card, base.as_ref().and_then(|b| b.person)) {
                (Some(c), None) => self.candidate(&uid, c),
                _ => None,
            };
            let ids: Vec<String> = [
                card.as_ref().and_then(|c| identity(&c.fields)),
                link_candidate.as_ref().and_then(|c| identity(&c.fields)),
                match &crm {
                    CrmState::Present(p) => identity(&p.fields),
                    _ => None,
                },
            ]
            .into_iter()
            .flatten()
            .collect();
            let input = ItemInput {
                remote,
                crm,
                base,
                link_candidate,
            };
            let plan = reconcile(&input, direction, policy, &self.mapping);
            *self.rules.entry(plan.rule).or_default() += 1;
            if !plan.is_nothing() {
                non_trivial += 1;
            }
            if self.apply(Some(uid), &plan.ops, budget)? {
                completed.extend(ids);
            }
        }
        let pids: Vec<u64> = self.crm.keys().copied().collect();
        for pid in pids {
            if self.base_of_person(pid).is_some() {
                continue;
            }
            let ids: Vec<String> = identity(&self.crm[&pid].fields).into_iter().collect();
            let input = ItemInput {
                remote: RemoteState::NotReported,
                crm: self.person_state(pid),
                base: None,
                link_candidate: None,
            };
            let plan = reconcile(&input, direction, policy, &self.mapping);
            *self.rules.entry(plan.rule).or_default() += 1;
            if !plan.is_nothing() {
                non_trivial += 1;
            }
            if self.apply(None, &plan.ops, budget)? {
                completed.extend(ids);
            }
        }
        Ok(non_trivial)
    }

    /// Applies a plan's ops in order, spending the crash budget. `CreatePerson` and the
    /// `SaveBase` after it are one store batch. A failed precondition (version, If-Match)
    /// abandons the item for this run, as `execute` does (`Ok(false)`).
    fn apply(
        &mut self,
        mut uid: Option<String>,
        ops: &[Op],
        budget: &mut Option<usize>,
    ) -> Result<bool, Crash> {
        let mut written_person: Option<PersonMark> = None;
        let mut written_remote: Option<RemoteMark> = None;
        let mut prepaid = false;
        for op in ops {
            if prepaid {
                prepaid = false;
            } else {
                let cost = if matches!(op, Op::CreatePerson { .. }) {
                    2
                } else {
                    1
                };
                if let Some(b) = budget {
                    if *b < cost {
                        return Err(Crash);
                    }
                    *b -= cost;
                }
                prepaid = cost == 2;
            }
            let now = self.tick();
            match op {
                Op::CreatePerson { fields } => {
                    self.sync_created.extend(identity(fields));
                    self.next_pid += 1;
                    let pid = self.next_pid;
                    self.crm.insert(
                        pid,
                        Person {
                            fields: fields.clone(),
                            version: 1,
                            update_time: now,
                        },
                    );
                    written_person = Some(PersonMark {
                        person_id: pid,
                        version: 1,
                    });
                }
                Op::LinkPerson {
                    person_id,
                    expected_version,
                    fields,
                    changed,
                }
                | Op::UpdatePerson {
                    person_id,
                    expected_version,
                    fields,
                    changed,
                } => {
                    let Some(p) = self.crm.get_mut(person_id) else {
                        return Ok(false);
                    };
                    if p.version != *expected_version {
                        return Ok(false);
                    }
                    if !changed.is_empty() {
                        for f in changed {
                            p.fields.put(f, fields.get(f).cloned());
                        }
                        p.version += 1;
                        p.update_time = now;
                        written_person = Some(PersonMark {
                            person_id: *person_id,
                            version: p.version,
                        });
                    }
                }
                Op::DeletePerson {
                    person_id,
                    expected_version,
                } => match self.crm.get(person_id) {
                    Some(p) if p.version == *expected_version => {
                        let id = identity(&p.fields).unwrap_or_default();
                        if self.crm_edited.contains(&id) {
                            self.violations
                                .push(format!("deleted {id}, edited in the CRM"));
                        }
                        if !self.sync_created.contains(&id) {
                            self.violations
                                .push(format!("deleted {id}, not created by sync"));
                        }
                        self.crm.remove(person_id);
                    }
                    _ => return Ok(false),
                },
                Op::UnlinkPerson { .. } | Op::Nothing => {}
                Op::PushCreate { person_id, fields } => {
                    let id = format!("p{person_id}");
                    if !self.remote.contains_key(&id) {
                        self.next_etag += 1;
                        let card = Card {
                            fields: fields.clone(),
                            etag: self.next_etag,
                            rev: now,
                        };
                        self.remote.insert(id.clone(), card);
                    }
                    let c = &self.remote[&id];
                    written_remote = Some(RemoteMark {
                        fingerprint: fingerprint(&c.fields),
                        etag: Some(c.etag.to_string()),
                    });
                    uid = Some(id);
                }
                Op::PushUpdate {
                    fields,
                    changed,
                    if_match,
                } => {
                    let u = uid.clone().unwrap();
                    let Some(c) = self.remote.get_mut(&u) else {
                        return Ok(false);
                    };
                    if if_match.as_deref() != Some(c.etag.to_string().as_str()) {
                        return Ok(false); // 412
                    }
                    for f in changed {
                        c.fields.put(f, fields.get(f).cloned());
                    }
                    self.next_etag += 1;
                    c.etag = self.next_etag;
                    c.rev = now;
                    written_remote = Some(RemoteMark {
                        fingerprint: fingerprint(&c.fields),
                        etag: Some(c.etag.to_string()),
                    });
                }
                Op::PushDelete { if_match } => {
                    let u = uid.clone().unwrap();
                    if let Some(c) = self.remote.get(&u) {
                        if if_match.as_deref() != Some(c.etag.to_string().as_str()) {
                            return Ok(false);
                        }
                        self.remote.remove(&u);
                    }
                }
                Op::RecordConflict(_) => self.conflicts += 1,
                Op::SaveBase(nb) => {
                    let remote = match &nb.remote {
                        Track::Known(m) => Some(m.clone()),
                        Track::Written => Some(written_remote.clone().unwrap()),
                        Track::Gone => None,
                    };
                    let person = match &nb.person {
                        Track::Known(m) => Some(*m),
                        Track::Written => Some(written_person.unwrap()),
                        Track::Gone => None,
                    };
                    let base = Base {
                        fields: nb.fields.clone(),
                        remote,
                        person,
                        origin: nb.origin,
                    };
                    self.bases.insert(uid.clone().unwrap(), base);
                }
                Op::ForgetItem => {
                    self.bases.remove(&uid.clone().unwrap());
                }
            }
        }
        Ok(true)
    }

    /// The oracle, per entity, from the state before a run: the values each side must hold
    /// after the entity's item completed, per merge rule on plain values.
    fn snapshot(&self) -> BTreeMap<String, (Option<Values>, Option<Values>)> {
        let mut s: BTreeMap<String, (Option<Values>, Option<Values>)> = BTreeMap::new();
        for p in self.crm.values() {
            if let Some(id) = identity(&p.fields) {
                s.entry(id).or_default().0 = Some(values(&p.fields));
            }
        }
        for c in self.remote.values() {
            if let Some(id) = identity(&c.fields) {
                s.entry(id).or_default().1 = Some(values(&c.fields));
            }
        }
        s
    }

    fn check_oracle(
        &mut self,
        before: &BTreeMap<String, (Option<Values>, Option<Values>)>,
        completed: &BTreeSet<String>,
        direction: Direction,
        policy: Policy,
    ) -> Result<(), TestCaseError> {
        prop_assert!(self.violations.is_empty(), "{:?}", self.violations);
        let after = self.snapshot();
        for id in completed {
            self.crm_edited.remove(id);
            let Some((c_after, Some(r_after))) = after.get(id) else {
                continue;
            };
            let checkable = match (c_after, before.get(id)) {
                (Some(c_after), Some((c_before, Some(r_before)))) => {
                    Some((c_after, c_before, r_before))
                }
                _ => None,
            };
            let r_after = r_after.clone();
            let Some((c_after, c_before, r_before)) = checkable else {
                self.agreed.insert(id.clone(), r_after);
                continue;
            };
            // A side that had no person starts fresh: the engine creates or links it against
            // an empty base.
            let (agreed, c_before) = match c_before {
                Some(c) => (self.agreed.get(id).cloned().unwrap_or_default(), c.clone()),
                None => (Values::new(), Values::new()),
            };
            let keys: BTreeSet<&String> = agreed
                .keys()
                .chain(c_before.keys())
                .chain(r_before.keys())
                .chain(c_after.keys())
                .chain(r_after.keys())
                .collect();
            let mut next_agreed = Values::new();
            for k in keys {
                let field = k.split('/').next().unwrap_or(k);
                let to_crm = self.mapping.get(field).to_crm();
                let to_provider =
                    direction == Direction::TwoWay && self.mapping.get(field).to_provider();
                let (a, c, r) = (agreed.get(k), c_before.get(k), r_before.get(k));
                let merged: Vec<Option<&String>> = if c == r {
                    vec![c]
                } else if c == a {
                    vec![r]
                } else if r == a {
                    vec![c]
                } else {
                    match policy {
                        Policy::ProviderWins => vec![r],
                        Policy::CrmWins => vec![c],
                        Policy::NewestWins => vec![r, c],
                    }
                };
                let allowed: Vec<(Option<&String>, Option<&String>)> = merged
                    .into_iter()
                    .map(|m| (if to_crm { m } else { c }, if to_provider { m } else { r }))
                    .collect();
                let got = (c_after.get(k), r_after.get(k));
                prop_assert!(
                    allowed.contains(&got),
                    "{id} {k}: agreed {a:?} crm {c:?} remote {r:?} -> got {got:?}, allowed {allowed:?}"
                );
                // The agreed value is the one on the side the field flows from.
                let source = if !to_crm && to_provider { got.0 } else { got.1 };
                if let Some(v) = source {
                    next_agreed.insert(k.clone(), v.clone());
                }
            }
            self.agreed.insert(id.clone(), next_agreed);
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Action {
    CreateRemote {
        name: u8,
        email: bool,
    },
    CreateCrm {
        name: u8,
        email: bool,
    },
    /// The same contact already in both (first-sync linking), possibly with other values.
    CreateBoth {
        name_crm: u8,
        name_remote: u8,
    },
    EditRemote {
        who: usize,
        edit: Edit,
    },
    EditCrm {
        who: usize,
        edit: Edit,
    },
    DeleteRemote {
        who: usize,
    },
    DeleteCrm {
        who: usize,
    },
    Sync {
        crash_after: Option<usize>,
    },
}

#[derive(Debug, Clone)]
enum Edit {
    Name(u8),
    Notes(u8),
    AddEmail(u8),
    RemoveEmail(u8),
    RelabelIdentity(u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0u8..3).prop_map(Edit::Name),
        (0u8..3).prop_map(Edit::Notes),
        (0u8..3).prop_map(Edit::AddEmail),
        (0u8..3).prop_map(Edit::RemoveEmail),
        (0u8..2).prop_map(Edit::RelabelIdentity),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        2 => (0u8..3, any::<bool>()).prop_map(|(name, email)| Action::CreateRemote { name, email }),
        2 => (0u8..3, any::<bool>()).prop_map(|(name, email)| Action::CreateCrm { name, email }),
        1 => (0u8..3, 0u8..3).prop_map(|(name_crm, name_remote)| Action::CreateBoth { name_crm, name_remote }),
        4 => (any::<usize>(), edit()).prop_map(|(who, edit)| Action::EditRemote { who, edit }),
        4 => (any::<usize>(), edit()).prop_map(|(who, edit)| Action::EditCrm { who, edit }),
        1 => any::<usize>().prop_map(|who| Action::DeleteRemote { who }),
        1 => any::<usize>().prop_map(|who| Action::DeleteCrm { who }),
        3 => proptest::option::of(0usize..12).prop_map(|crash_after| Action::Sync { crash_after }),
    ]
}

fn new_fields(entity: u64, name: u8, email: bool) -> FieldMap {
    let id = format!("e{entity}@x");
    let fields = FieldMap::new()
        .with(ENTITY, format!("e{entity}"))
        .with(names::NAME, format!("n{name}"));
    if email {
        fields.with(
            names::EMAILS,
            FieldValue::set([(id.clone(), format!("home:{id}"))]),
        )
    } else {
        fields
    }
}

fn apply_edit(fields: &mut FieldMap, edit: &Edit) -> bool {
    let before = fields.clone();
    // Extra emails are per entity, so only the same contact shares an email.
    let owner = identity(fields).unwrap_or_default();
    let mut emails = fields.elements(names::EMAILS);
    match edit {
        Edit::Name(v) => fields.insert(names::NAME, format!("n{v}")),
        Edit::Notes(v) => fields.insert(names::NOTES, format!("t{v}")),
        Edit::AddEmail(v) => {
            emails.insert(format!("k{v}+{owner}"), format!("home:k{v}+{owner}"));
        }
        Edit::RemoveEmail(v) => {
            emails.remove(&format!("k{v}+{owner}"));
        }
        Edit::RelabelIdentity(v) => {
            let id = format!("{owner}@x");
            if emails.contains_key(&id) {
                emails.insert(id.clone(), format!("l{v}:{id}"));
            }
        }
    }
    if !matches!(edit, Edit::Name(_) | Edit::Notes(_)) {
        fields.insert(names::EMAILS, FieldValue::Set(emails));
    }
    *fields != before
}

fn run(actions: Vec<Action>, direction: Direction, policy: Policy) -> Result<World, TestCaseError> {
    run_with(actions, direction, policy, FieldDirections::all_both())
}

fn run_with(
    actions: Vec<Action>,
    direction: Direction,
    policy: Policy,
    mapping: FieldDirections,
) -> Result<World, TestCaseError> {
    let mut w = World {
        mapping,
        ..World::default()
    };
    let mut entity = 0u64;
    for action in actions {
        let now = w.tick();
        match action {
            Action::CreateRemote { name, email } => {
                entity += 1;
                w.next_uid += 1;
                w.next_etag += 1;
                let card = Card {
                    fields: new_fields(entity, name, email),
                    etag: w.next_etag,
                    rev: now,
                };
                w.remote.insert(format!("u{}", w.next_uid), card);
            }
            Action::CreateCrm { name, email } => {
                entity += 1;
                w.next_pid += 1;
                let person = Person {
                    fields: new_fields(entity, name, email),
                    version: 1,
                    update_time: now,
                };
                w.crm.insert(w.next_pid, person);
            }
            Action::CreateBoth {
                name_crm,
                name_remote,
            } => {
                entity += 1;
                w.next_uid += 1;
                w.next_etag += 1;
                w.next_pid += 1;
                let card = Card {
                    fields: new_fields(entity, name_remote, true),
                    etag: w.next_etag,
                    rev: now,
                };
                w.remote.insert(format!("u{}", w.next_uid), card);
                let person = Person {
                    fields: new_fields(entity, name_crm, true),
                    version: 1,
                    update_time: now,
                };
                w.crm.insert(w.next_pid, person);
            }
            Action::EditRemote { who, edit } => {
                let uids: Vec<String> = w.remote.keys().cloned().collect();
                if uids.is_empty() {
                    continue;
                }
                let uid = uids[who % uids.len()].clone();
                w.next_etag += 1;
                let etag = w.next_etag;
                let c = w.remote.get_mut(&uid).unwrap();
                if apply_edit(&mut c.fields, &edit) {
                    c.etag = etag;
                    c.rev = now;
                    if let Some(id) = identity(&c.fields) {
                        if let Some(e) = w.crm_deleted.get_mut(&id) {
                            *e = true;
                        }
                    }
                }
            }
            Action::EditCrm { who, edit } => {
                let pids: Vec<u64> = w.crm.keys().copied().collect();
                if pids.is_empty() {
                    continue;
                }
                let p = w.crm.get_mut(&pids[who % pids.len()]).unwrap();
                if apply_edit(&mut p.fields, &edit) {
                    p.version += 1;
                    p.update_time = now;
                    w.crm_edited.extend(identity(&p.fields));
                }
            }
            Action::DeleteRemote { who } => {
                let uids: Vec<String> = w.remote.keys().cloned().collect();
                if uids.is_empty() {
                    continue;
                }
                let uid = uids[who % uids.len()].clone();
                let linked = w.linked_uid(&uid);
                let card = w.remote.remove(&uid).unwrap();
                if linked {
                    w.remote_deleted.extend(identity(&card.fields));
                }
            }
            Action::DeleteCrm { who } => {
                let pids: Vec<u64> = w.crm.keys().copied().collect();
                if pids.is_empty() {
                    continue;
                }
                let pid = pids[who % pids.len()];
                let linked = w
                    .base_of_person(pid)
                    .is_some_and(|(_, b)| b.remote.is_some());
                let p = w.crm.remove(&pid).unwrap();
                if linked {
                    if let Some(id) = identity(&p.fields) {
                        w.crm_deleted.insert(id, false);
                    }
                }
            }
            Action::Sync { crash_after } => {
                let before = w.snapshot();
                let mut completed = BTreeSet::new();
                let mut budget = crash_after;
                if w.sync(direction, policy, &mut budget, &mut completed)
                    .is_err()
                {
                    w.crashes += 1;
                }
                w.check_oracle(&before, &completed, direction, policy)?;
            }
        }
    }

    // The final quiescent sync: one crash-free run, then another that must do nothing.
    let before = w.snapshot();
    let mut completed = BTreeSet::new();
    let _ = w.sync(direction, policy, &mut None, &mut completed);
    w.check_oracle(&before, &completed, direction, policy)?;
    let mut again = BTreeSet::new();
    let n = w.sync(direction, policy, &mut None, &mut again).ok();
    prop_assert_eq!(n, Some(0), "a second sync still had work: {:#?}", w);

    // No duplicates.
    let ids: BTreeSet<String> = w
        .crm
        .values()
        .map(|p| &p.fields)
        .chain(w.remote.values().map(|c| &c.fields))
        .filter_map(identity)
        .collect();
    for id in &ids {
        prop_assert!(
            w.person_by_identity(id).len() <= 1,
            "person {id} duplicated"
        );
        prop_assert!(w.card_by_identity(id).len() <= 1, "card {id} duplicated");
    }
    // Nothing deleted comes back.
    for id in &w.remote_deleted {
        prop_assert!(w.card_by_identity(id).is_empty(), "card {id} came back");
    }
    for (id, remote_edited) in &w.crm_deleted {
        prop_assert!(
            *remote_edited || w.person_by_identity(id).is_empty(),
            "person {id} came back without a remote edit"
        );
    }
    // Every card is tracked; in two-way every person too, and linked pairs agree.
    for uid in w.remote.keys() {
        prop_assert!(w.bases.contains_key(uid), "card {uid} untracked");
    }
    if direction == Direction::TwoWay {
        for pid in w.crm.keys() {
            prop_assert!(w.base_of_person(*pid).is_some(), "person {pid} untracked");
        }
        for (uid, b) in &w.bases {
            if let (Some(_), Some(pm)) = (&b.remote, b.person) {
                let card = &w.remote[uid];
                let person = &w.crm[&pm.person_id];
                for f in [ENTITY, names::NAME, names::NOTES, names::EMAILS] {
                    if w.mapping.get(f) == FieldDirection::Both {
                        prop_assert_eq!(
                            card.fields.get(f),
                            person.fields.get(f),
                            "{} disagrees on {}",
                            uid,
                            f
                        );
                    }
                }
            }
        }
    }
    Ok(w)
}

/// The generator must reach the interesting rules and crash often, or the properties above
/// would hold vacuously.
#[test]
fn the_model_exercises_crashes_conflicts_links_and_tombstones() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = proptest::collection::vec(action(), 1..60);
    let mut rules: BTreeMap<Rule, usize> = BTreeMap::new();
    let (mut crashes, mut conflicts) = (0, 0);
    for direction in [Direction::OneWay, Direction::TwoWay] {
        for _ in 0..100 {
            let actions = strategy.new_tree(&mut runner).unwrap().current();
            let w = run(actions, direction, Policy::NewestWins).unwrap();
            for (r, n) in w.rules {
                *rules.entry(r).or_default() += n;
            }
            crashes += w.crashes;
            conflicts += w.conflicts;
        }
    }
    assert!(crashes > 20, "crashes: {crashes}");
    assert!(conflicts > 20, "conflicts: {conflicts}");
    for rule in [
        Rule::RemoteCreatedLinked,
        Rule::RemoteCreatedNew,
        Rule::RemoteChanged,
        Rule::BothChanged,
        Rule::CrmChangedPushed,
        Rule::CrmChangedStaysLocal,
        Rule::CrmCreatedPushed,
        Rule::RemoteDeletedPersonDeleted,
        Rule::RemoteDeletedPersonUnlinked,
        Rule::CrmDeletedRemoteDeleted,
        Rule::CrmDeletedUnlinked,
        Rule::UnlinkedCardIgnored,
    ] {
        assert!(
            rules.get(&rule).copied().unwrap_or(0) > 0,
            "{rule:?} never fired: {rules:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn two_way_newest_wins(actions in proptest::collection::vec(action(), 1..60)) {
        run(actions, Direction::TwoWay, Policy::NewestWins).map(|_| ())?;
    }

    #[test]
    fn two_way_provider_wins(actions in proptest::collection::vec(action(), 1..60)) {
        run(actions, Direction::TwoWay, Policy::ProviderWins).map(|_| ())?;
    }

    #[test]
    fn two_way_crm_wins(actions in proptest::collection::vec(action(), 1..60)) {
        run(actions, Direction::TwoWay, Policy::CrmWins).map(|_| ())?;
    }

    #[test]
    fn one_way_newest_wins(actions in proptest::collection::vec(action(), 1..60)) {
        run(actions, Direction::OneWay, Policy::NewestWins).map(|_| ())?;
    }

    #[test]
    fn one_way_provider_wins(actions in proptest::collection::vec(action(), 1..60)) {
        run(actions, Direction::OneWay, Policy::ProviderWins).map(|_| ())?;
    }

    #[test]
    fn two_way_with_one_directional_fields(actions in proptest::collection::vec(action(), 1..60)) {
        let mapping = FieldDirections::all_both()
            .with(names::NAME, FieldDirection::ToProvider)
            .with(names::NOTES, FieldDirection::ToCrm);
        run_with(actions, Direction::TwoWay, Policy::NewestWins, mapping).map(|_| ())?;
    }

    #[test]
    fn one_way_crm_wins(actions in proptest::collection::vec(action(), 1..60)) {
        run(actions, Direction::OneWay, Policy::CrmWins).map(|_| ())?;
    }
}
