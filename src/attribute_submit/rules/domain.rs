//! Email domain patterns of an `email_domain` rule.

/// `contoso.com` is that domain only; `*.contoso.com` is any subdomain of it but not
/// `contoso.com` itself. Both stored lowercase without a trailing dot.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum DomainPattern {
    Exact(String),
    AnySubdomainOf(String),
}

impl DomainPattern {
    pub(super) fn parse(entry: &str) -> Result<DomainPattern, String> {
        let lower = entry.trim().to_lowercase();
        let domain = lower.strip_suffix('.').unwrap_or(&lower);
        if domain.starts_with('@') {
            return Err(format!("write `{}` without the `@`", domain.trim_start_matches('@')));
        }
        let (pattern, base) = match domain.strip_prefix("*.") {
            Some(base) => (DomainPattern::AnySubdomainOf(base.to_string()), base),
            None => (DomainPattern::Exact(domain.to_string()), domain),
        };
        let well_formed = !base.is_empty()
            && base.split('.').all(|label| !label.is_empty())
            && !base
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, '*' | '@' | '/' | ':' | ',' | '"' | '\''));
        if well_formed {
            Ok(pattern)
        } else {
            Err(format!(
                "`{}` is not a domain pattern: write `contoso.com` for that domain or `*.contoso.com` for its subdomains",
                entry.trim()
            ))
        }
    }

    /// `domain` as [`of_email`] returns it.
    pub(super) fn matches(&self, domain: &str) -> bool {
        match self {
            DomainPattern::Exact(exact) => domain == exact,
            DomainPattern::AnySubdomainOf(base) => domain
                .strip_suffix(base.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }
}

/// The domain of an email address, lowercase, without a trailing dot.
pub(super) fn of_email(email: &str) -> Option<String> {
    let (_, domain) = email.trim().rsplit_once('@')?;
    let domain = domain.trim().to_lowercase();
    let domain = domain.strip_suffix('.').unwrap_or(&domain);
    (!domain.is_empty()).then(|| domain.to_string())
}
