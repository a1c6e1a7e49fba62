//! Directory fix-ups (Graph): a display name and a UPN made from templates over the user's
//! properties. Idempotent by comparison: nothing is written when the user already has the
//! wanted values, and a UPN already of the form `<base>[n]@<domain>` counts as right (it was
//! made unique earlier), so redeliveries never renumber a user.

use crate::graph::{GraphClient, User, UserPatch};
use crate::settings::provisioning::DirectorySettings;

use super::destinations::{DestinationError, NewUser, Outcome};
use super::graph_failure;

/// A UPN's local part is at most 64 characters; leave room for the uniqueness number.
const MAX_BASE_CHARS: usize = 60;
/// How many numbered candidates are tried before giving up.
const MAX_CANDIDATES: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a template has an unbalanced or empty {{placeholder}}")]
pub struct InvalidTemplate;

/// The placeholder names in a template (`{givenName} {surname}` → givenName, surname).
pub fn placeholders(template: &str) -> Result<Vec<String>, InvalidTemplate> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(InvalidTemplate);
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or(InvalidTemplate)?;
        let name = after[..close].trim();
        if name.is_empty() || name.contains('{') {
            return Err(InvalidTemplate);
        }
        names.push(name.to_string());
        rest = &after[close + 1..];
    }
    Ok(names)
}

/// The template with each placeholder replaced by the property (missing ones by nothing),
/// runs of whitespace collapsed. `None` when nothing but separators is left.
pub fn render(template: &str, user: &NewUser) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        if let Some(value) = user.property(after[..close].trim()) {
            out.push_str(&value);
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    let collapsed = out.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.chars().any(char::is_alphanumeric).then_some(collapsed)
}

/// A UPN local part from rendered text: lower-case ASCII letters, digits, `.`, `-`, `_`;
/// common accented letters folded, spaces and everything else dropped, no leading,
/// trailing or doubled dots.
pub fn upn_base(text: &str) -> Option<String> {
    let mut out = String::new();
    for c in text.to_lowercase().chars() {
        let folded = match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => "a",
            'æ' => "ae",
            'ç' => "c",
            'è' | 'é' | 'ê' | 'ë' => "e",
            'ì' | 'í' | 'î' | 'ï' => "i",
            'ñ' => "n",
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => "o",
            'ß' => "ss",
            'ù' | 'ú' | 'û' | 'ü' => "u",
            'ý' | 'ÿ' => "y",
            c if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') => {
                out.push(c);
                continue;
            }
            '.' if !out.is_empty() && !out.ends_with('.') => ".",
            _ => continue,
        };
        out.push_str(folded);
    }
    let trimmed: String = out.trim_matches('.').chars().take(MAX_BASE_CHARS).collect();
    let trimmed = trimmed.trim_end_matches('.').to_string();
    (!trimmed.is_empty()).then_some(trimmed)
}

/// True when `upn` is `<base>@<domain>` or `<base><number>@<domain>` (ignoring case).
fn is_form_of(upn: &str, base: &str, domain: &str) -> bool {
    let upn = upn.to_ascii_lowercase();
    let Some((local, upn_domain)) = upn.rsplit_once('@') else {
        return false;
    };
    upn_domain == domain
        && local
            .strip_prefix(base)
            .is_some_and(|suffix| suffix.chars().all(|c| c.is_ascii_digit()) && !suffix.starts_with('0'))
}

pub struct DirectoryFixups {
    settings: DirectorySettings,
}

impl DirectoryFixups {
    pub fn new(settings: DirectorySettings) -> DirectoryFixups {
        DirectoryFixups { settings }
    }

    /// The Graph properties the templates read.
    pub fn needed_properties(&self) -> Vec<String> {
        [&self.settings.display_name_template, &self.settings.upn_template]
            .into_iter()
            .flatten()
            .flat_map(|template| placeholders(template).unwrap_or_default())
            .collect()
    }

    /// Brings the display name and UPN to what the templates say; one PATCH at most.
    pub async fn apply(
        &self,
        graph: &GraphClient,
        current: &User,
        user: &NewUser,
    ) -> Result<Outcome, DestinationError> {
        let mut patch = UserPatch::default();
        if let Some(template) = &self.settings.display_name_template
            && let Some(wanted) = render(template, user)
            && current.display_name.as_deref() != Some(wanted.as_str())
        {
            patch.display_name = Some(wanted);
        }
        if let (Some(template), Some(domain)) = (&self.settings.upn_template, &self.settings.upn_domain)
            && let Some(base) = render(template, user).as_deref().and_then(upn_base)
        {
            let already = current
                .user_principal_name
                .as_deref()
                .is_some_and(|upn| is_form_of(upn, &base, domain));
            if !already {
                patch.user_principal_name = Some(self.unique_upn(graph, user, &base, domain).await?);
            }
        }
        if patch.is_empty() {
            return Ok(Outcome::Done { external_id: None });
        }
        graph
            .patch_user(user.object_id.as_uuid(), &patch)
            .await
            .map_err(|error| graph_failure("directory fix-up", &error))?;
        Ok(Outcome::Done { external_id: None })
    }

    /// `base@domain`, else `base2@domain`, `base3@domain`, ...: the first no other user holds.
    async fn unique_upn(
        &self,
        graph: &GraphClient,
        user: &NewUser,
        base: &str,
        domain: &str,
    ) -> Result<String, DestinationError> {
        for n in 1..=MAX_CANDIDATES {
            let candidate = if n == 1 {
                format!("{base}@{domain}")
            } else {
                format!("{base}{n}@{domain}")
            };
            let owner = graph
                .user_id_by_principal_name(&candidate)
                .await
                .map_err(|error| graph_failure("directory fix-up (UPN lookup)", &error))?;
            match owner {
                None => return Ok(candidate),
                Some(owner) if owner == user.object_id.as_uuid() => return Ok(candidate),
                Some(_) => continue,
            }
        }
        Err(DestinationError::permanent(
            "upn_exhausted",
            format!("directory fix-up: the first {MAX_CANDIDATES} UPN candidates are all taken"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provisioning::destinations::ObjectId;

    fn user() -> NewUser {
        NewUser {
            given_name: Some("Zoë".into()),
            surname: Some("O'Brien Smith".into()),
            ..NewUser::new(ObjectId::parse("84360e8b-3321-4e37-b9ec-10fccd0263b8").unwrap())
        }
    }

    #[test]
    fn templates_render_properties_and_collapse_gaps() {
        assert_eq!(
            render("{givenName} {surname}", &user()).as_deref(),
            Some("Zoë O'Brien Smith")
        );
        assert_eq!(render("{givenName} {missing}", &user()).as_deref(), Some("Zoë"));
        assert_eq!(render("{missing} {other}", &user()), None);
        assert_eq!(placeholders("{a}.{ b }").unwrap(), vec!["a", "b"]);
        assert!(placeholders("{a").is_err() && placeholders("a}").is_err() && placeholders("{}").is_err());
    }

    #[test]
    fn upn_bases_are_plain_ascii() {
        let rendered = render("{givenName}.{surname}", &user()).unwrap();
        assert_eq!(upn_base(&rendered).as_deref(), Some("zoe.obriensmith"));
        assert_eq!(upn_base("..a..b.."), Some("a.b".into()));
        assert_eq!(upn_base("日本"), None);
        assert!(is_form_of("Zoe.Smith7@contoso.com", "zoe.smith", "contoso.com"));
        assert!(is_form_of("zoe.smith@contoso.com", "zoe.smith", "contoso.com"));
        assert!(!is_form_of("zoe.smithers@contoso.com", "zoe.smith", "contoso.com"));
        assert!(!is_form_of("zoe.smith@fabrikam.com", "zoe.smith", "contoso.com"));
    }
}
