//! `[[account]]`: whose instances a poller reads, in which regions, under which label.

use super::names::one_label;
use super::{across, at, polling, Checked};
use nss_ec2_snapshot::fleet::Zone;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccount {
    role_arn: Option<String>,
    external_id: Option<String>,
    regions: Option<Vec<String>>,
    label: Option<String>,
}

/// One `[[account]]`: whose instances to read, where, and under which label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The role to assume with the host's credentials; `None`: the host's own account.
    pub role_arn: Option<String>,
    /// `ExternalId` of the AssumeRole call.
    pub external_id: Option<String>,
    /// Its regions (the top-level `regions` when it lists none; empty: the SDK's region).
    pub regions: Vec<String>,
    /// Its names live under `label.D` instead of the top.
    pub label: Option<String>,
}

impl Account {
    /// The account ID of its role (`None`: the host's own account).
    pub fn id(&self) -> Option<&str> {
        self.role_arn
            .as_deref()
            .and_then(|a| a.split(':').nth(4))
            .filter(|id| !id.is_empty())
    }

    /// How messages name it: `account 111122223333 (prod)`, `the host's account`.
    pub fn describe(&self) -> String {
        match (self.id(), &self.label) {
            (Some(id), Some(l)) => format!("account {id} ({l})"),
            (Some(id), None) => format!("account {id}"),
            (None, Some(l)) => format!("the host's account ({l})"),
            (None, None) => "the host's account".into(),
        }
    }

    /// Whether the two read some region of one account (an empty list is the SDK's one
    /// region): two roles into one account would read its instances twice.
    fn overlaps(&self, other: &Account) -> bool {
        let (a, b) = (&self.regions, &other.regions);
        self.id() == other.id()
            && ((a.is_empty() && b.is_empty()) || a.iter().any(|r| b.contains(r)))
    }
}

/// A role ARN: `arn:PARTITION:iam::ACCOUNT:role/NAME`, ACCOUNT of 12 digits.
fn role_arn_ok(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "iam"
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|n| !n.is_empty())
}

/// Every `[[account]]`, with the top-level `regions` for one that lists none.
pub(super) fn accounts(
    list: Option<Vec<RawAccount>>,
    regions: &[String],
    zones: &[Zone],
) -> Checked<Vec<Account>> {
    let mut accounts: Vec<Account> = Vec::new();
    for (i, a) in list.unwrap_or_default().into_iter().enumerate() {
        let key = |k: &str| format!("account[{i}].{k}");
        if let Some(arn) = a.role_arn.as_deref().filter(|arn| !role_arn_ok(arn)) {
            return Err(at(
                key("role_arn"),
                format!("{arn:?} is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME, ACCOUNT of 12 digits)"),
            ));
        }
        if let Some(id) = a
            .external_id
            .as_deref()
            .filter(|id| !(2..=1224).contains(&id.chars().count()))
        {
            return Err(at(
                key("external_id"),
                format!(
                    "is {} characters: STS takes 2 to 1224, and every AssumeRole would fail",
                    id.chars().count()
                ),
            ));
        }
        if a.external_id.is_some() && a.role_arn.is_none() {
            return Err(at(
                key("external_id"),
                "needs role_arn: the host's own account is not assumed",
            ));
        }
        let regions = match a.regions {
            Some(r) if r.is_empty() => return Err(at(key("regions"), "must not be empty")),
            Some(r) => r,
            None => regions.to_vec(),
        };
        let regions = polling::regions(regions, &key("regions"))?;
        let label = match a.label {
            None => None,
            Some(l) => {
                let l = one_label(&l).map_err(|()| {
                    at(
                        key("label"),
                        format!(
                            "{:?} is not one name label ([a-z0-9-], 1 to 63, not all digits)",
                            l.to_ascii_lowercase()
                        ),
                    )
                })?;
                across::label_is_not_a_zone(&l, &key("label"), zones)?;
                Some(l)
            }
        };
        let account = Account {
            role_arn: a.role_arn,
            external_id: a.external_id,
            regions,
            label,
        };
        if let Some(l) = &account.label {
            if accounts.iter().any(|o| o.label.as_ref() == Some(l)) {
                return Err(at(key("label"), format!("{l:?} labels two accounts")));
            }
        }
        if accounts.iter().any(|o| o.overlaps(&account)) {
            return Err(at(
                key("role_arn"),
                format!(
                    "{} is listed twice for a region: its instances would be read twice",
                    account.describe()
                ),
            ));
        }
        accounts.push(account);
    }
    Ok(accounts)
}
