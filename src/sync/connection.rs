//! A connection's sync settings: whose persons, which provider group, which direction, the
//! conflict policy, the visibility of persons it creates, the field mapping and the phone
//! region. Stored and edited by the API layer; read by [`super::execute::run`].

use serde::{Deserialize, Serialize};

use super::convert::{field_directions, Region};
use super::merge::Policy;
use super::reconcile::{Direction, FieldDirections};
use crate::crm::{MappingConfig, UserId, Visibility};
use crate::providers::ProviderKind;

/// A connection id.
pub type ConnectionId = u64;

/// One user's link to one sync group of one provider account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncConnection {
    /// The id (keys the connection's cursor, items, conflicts and stats).
    pub id: ConnectionId,
    /// The CRM user: owner of the persons it creates, and whose persons it pushes.
    pub user_id: UserId,
    /// The provider's protocol.
    pub provider: ProviderKind,
    /// The provider's sync group id (collection URL, contact group, folder id).
    pub group: String,
    /// One-way (provider → CRM) or two-way.
    pub direction: Direction,
    /// How a field changed on both sides is decided.
    #[serde(default)]
    pub policy: Policy,
    /// The visibility of the persons the connection creates.
    pub visibility: Visibility,
    /// Which fields sync, and which way.
    #[serde(default)]
    pub mapping: MappingConfig,
    /// ISO 3166 region for phone numbers written without a country code (e.g. `"DE"`).
    #[serde(default)]
    pub default_region: Option<String>,
}

impl SyncConnection {
    /// The field directions `reconcile` applies.
    pub fn field_directions(&self) -> FieldDirections {
        field_directions(&self.mapping)
    }

    /// The phone region, when one is set and known.
    pub fn region(&self) -> Region {
        self.default_region
            .as_deref()
            .and_then(|r| r.trim().to_ascii_uppercase().parse().ok())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn region_parses_case_insensitively_and_unknown_is_none() {
        let mut c = SyncConnection {
            id: 1,
            user_id: 1,
            provider: ProviderKind::Carddav,
            group: "g".into(),
            direction: Direction::OneWay,
            policy: Policy::default(),
            visibility: Visibility::EntireCompany,
            mapping: MappingConfig::default(),
            default_region: Some("de".into()),
        };
        assert_eq!(c.region(), Some(phonenumber::country::Id::DE));
        c.default_region = Some("nowhere".into());
        assert_eq!(c.region(), None);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<SyncConnection>(&json).unwrap(), c);
    }
}
