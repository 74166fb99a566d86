//! The `pretty` output of the ACL commands: labelled lines padded to fixed
//! columns, sections printed only when they have entries.

use std::collections::HashMap;
use std::fmt::Write;

use serde_json::{Value, json};

use super::types::{
    AuthMethod, BindingRule, NodeIdentity, Policy, Role, ServiceIdentity, TemplatedPolicy,
    TemplatedPolicyResponse, Token, TokenExpanded,
};

/// Appends one line (`s` plus a newline).
macro_rules! line {
    ($buf:expr, $($arg:tt)*) => {{
        let _ = writeln!($buf, $($arg)*);
    }};
}

fn datacenters(dcs: &[String]) -> String {
    if dcs.is_empty() {
        "all".to_string()
    } else {
        dcs.join(", ")
    }
}

// === policies ===

/// One policy.
pub fn policy(p: &Policy, meta: bool) -> String {
    let mut b = String::new();
    line!(b, "ID:           {}", p.id);
    line!(b, "Name:         {}", p.name);
    if !p.partition.is_empty() {
        line!(b, "Partition:    {}", p.partition);
    }
    if !p.namespace.is_empty() {
        line!(b, "Namespace:    {}", p.namespace);
    }
    line!(b, "Description:  {}", p.description);
    line!(
        b,
        "Datacenters:  {}",
        p.datacenters.as_deref().unwrap_or_default().join(", ")
    );
    if meta {
        line!(b, "Hash:         {}", p.hash.hex());
        line!(b, "Create Index: {}", p.create_index);
        line!(b, "Modify Index: {}", p.modify_index);
    }
    b.push_str("Rules:\n");
    b.push_str(&p.rules);
    b
}

/// The policy list: a block per policy, indented under its name.
pub fn policy_list(list: &[Policy], meta: bool) -> String {
    let mut b = String::new();
    for p in list {
        line!(b, "{}:", p.name);
        line!(b, "   ID:           {}", p.id);
        if !p.partition.is_empty() {
            line!(b, "   Partition:    {}", p.partition);
        }
        if !p.namespace.is_empty() {
            line!(b, "   Namespace:    {}", p.namespace);
        }
        line!(b, "   Description:  {}", p.description);
        line!(
            b,
            "   Datacenters:  {}",
            p.datacenters.as_deref().unwrap_or_default().join(", ")
        );
        if meta {
            line!(b, "   Hash:         {}", p.hash.hex());
            line!(b, "   Create Index: {}", p.create_index);
            line!(b, "   Modify Index: {}", p.modify_index);
        }
    }
    b
}

// === identities and templated policies (shared by tokens and roles) ===

fn links_section(b: &mut String, title: &str, links: &[super::types::Link], indent: &str) {
    if links.is_empty() {
        return;
    }
    line!(b, "{indent}{title}:");
    for l in links {
        line!(b, "{indent}   {} - {}", l.id, l.name);
    }
}

fn identities(
    b: &mut String,
    svcs: &[ServiceIdentity],
    nodes: &[NodeIdentity],
    templated: &[TemplatedPolicy],
    indent: &str,
) {
    if !svcs.is_empty() {
        line!(b, "{indent}Service Identities:");
        for s in svcs {
            line!(
                b,
                "{indent}   {} (Datacenters: {})",
                s.service_name,
                datacenters(&s.datacenters)
            );
        }
    }
    if !nodes.is_empty() {
        line!(b, "{indent}Node Identities:");
        for n in nodes {
            line!(
                b,
                "{indent}   {} (Datacenter: {})",
                n.node_name,
                n.datacenter
            );
        }
    }
    if !templated.is_empty() {
        line!(b, "{indent}Templated Policies:");
        for t in templated {
            line!(b, "{indent}   {}", t.template_name);
            if let Some(v) = t.template_variables.as_ref().filter(|v| !v.name.is_empty()) {
                line!(b, "{indent}      Name: {}", v.name);
            }
            line!(
                b,
                "{indent}      Datacenters: {}",
                datacenters(&t.datacenters)
            );
        }
    }
}

// === tokens ===

fn token_header(b: &mut String, t: &Token, meta: bool) {
    line!(b, "AccessorID:       {}", t.accessor_id);
    line!(b, "SecretID:         {}", t.secret_id);
    if !t.partition.is_empty() {
        line!(b, "Partition:        {}", t.partition);
    }
    if !t.namespace.is_empty() {
        line!(b, "Namespace:        {}", t.namespace);
    }
    line!(b, "Description:      {}", t.description);
    line!(b, "Local:            {}", t.local);
    if !t.auth_method.is_empty() {
        line!(
            b,
            "Auth Method:      {} (Namespace: {})",
            t.auth_method,
            t.auth_method_namespace
        );
    }
    line!(b, "Create Time:      {}", t.create_time);
    if let Some(exp) = t.expiration_time.as_ref().filter(|e| !e.is_zero()) {
        line!(b, "Expiration Time:  {exp}");
    }
    if meta {
        line!(b, "Hash:             {}", t.hash.hex());
        line!(b, "Create Index:     {}", t.create_index);
        line!(b, "Modify Index:     {}", t.modify_index);
    }
}

/// One token.
pub fn token(t: &Token, meta: bool) -> String {
    let mut b = String::new();
    token_header(&mut b, t, meta);
    links_section(&mut b, "Policies", &t.policies, "");
    links_section(&mut b, "Roles", &t.roles, "");
    identities(
        &mut b,
        &t.service_identities,
        &t.node_identities,
        &t.templated_policies,
        "",
    );
    b
}

/// The token list: token blocks separated by an empty line.
pub fn token_list(list: &[Token], meta: bool) -> String {
    list.iter()
        .map(|t| token(t, meta))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The rules a service identity, node identity or templated policy expands to.
fn synthetic_rules(template: &str, name: &str) -> String {
    let vars = if name.is_empty() {
        Value::Null
    } else {
        json!({ "name": name })
    };
    meshgate_acl::render_templated_policy(template, &vars).unwrap_or_default()
}

/// A token with the policies and roles behind it (`read -expanded`), laid out
/// like Consul's authorizer layers, indented with tabs.
pub fn token_expanded(x: &TokenExpanded, meta: bool) -> String {
    let t = &x.token;
    let mut b = String::new();
    token_header(&mut b, t, meta);
    let policies: HashMap<&str, &Policy> = x
        .expanded_policies
        .iter()
        .flatten()
        .map(|p| (p.id.as_str(), p))
        .collect();
    let roles: HashMap<&str, &Role> = x
        .expanded_roles
        .iter()
        .flatten()
        .map(|r| (r.id.as_str(), r))
        .collect();
    let empty = Policy::default();

    let write_policy = |b: &mut String, p: &Policy, indent: &str| {
        line!(b, "{indent}Policy Name: {}", p.name);
        line!(b, "{indent}\tID: {}", p.id);
        line!(b, "{indent}\tDescription: {}", p.description);
        line!(b, "{indent}\tRules:");
        let deeper = format!("\n{indent}\t\t");
        b.push_str(&format!("{indent}\t\t"));
        b.push_str(&p.rules.replace('\n', &deeper));
        b.push_str("\n\n");
    };
    let write_synthetic = |b: &mut String, template: &str, name: &str, indent: &str| {
        line!(
            b,
            "{indent}\tDescription: synthetic policy generated from templated policy: {template}"
        );
        b.push_str(&format!("{indent}\tRules:"));
        let deeper = format!("\n{indent}\t\t");
        b.push_str(&synthetic_rules(template, name).replace('\n', &deeper));
        b.push_str("\n\n");
    };
    let write_service = |b: &mut String, s: &ServiceIdentity, indent: &str| {
        line!(
            b,
            "{indent}Name: {} (Datacenters: {})",
            s.service_name,
            datacenters(&s.datacenters)
        );
        write_synthetic(b, "builtin/service", &s.service_name, indent);
    };
    let write_node = |b: &mut String, n: &NodeIdentity, indent: &str| {
        line!(
            b,
            "{indent}Name: {} (Datacenter: {})",
            n.node_name,
            n.datacenter
        );
        write_synthetic(b, "builtin/node", &n.node_name, indent);
    };

    if !t.policies.is_empty() {
        b.push_str("Policies:\n");
        for l in &t.policies {
            let p = policies.get(l.id.as_str()).copied().unwrap_or(&empty);
            write_policy(&mut b, p, "\t");
        }
    }
    if !t.service_identities.is_empty() {
        b.push_str("Service Identities:\n");
        for s in &t.service_identities {
            write_service(&mut b, s, "\t");
        }
    }
    if !t.node_identities.is_empty() {
        b.push_str("Node Identities:\n");
        for n in &t.node_identities {
            write_node(&mut b, n, "\t");
        }
    }
    if !t.templated_policies.is_empty() {
        b.push_str("Templated Policies:\n");
        for tp in &t.templated_policies {
            line!(b, "\t{}", tp.template_name);
            let name = tp
                .template_variables
                .as_ref()
                .map(|v| v.name.as_str())
                .unwrap_or("");
            if !name.is_empty() {
                line!(b, "\t\tName: {name}");
            }
            line!(b, "\t\tDatacenters: {}", datacenters(&tp.datacenters));
            write_synthetic(&mut b, &tp.template_name, name, "\t");
        }
    }
    if !t.roles.is_empty() {
        b.push_str("Roles:\n");
        let empty_role = Role::default();
        for l in &t.roles {
            let r = roles.get(l.id.as_str()).copied().unwrap_or(&empty_role);
            line!(b, "\tRole Name: {}", r.name);
            line!(b, "\t\tID: {}", r.id);
            line!(b, "\t\tDescription: {}", r.description);
            if !r.policies.is_empty() {
                b.push_str("\t\tPolicies:\n");
                for pl in &r.policies {
                    let p = policies.get(pl.id.as_str()).copied().unwrap_or(&empty);
                    write_policy(&mut b, p, "\t\t\t");
                }
            }
            if !r.service_identities.is_empty() {
                b.push_str("\t\tService Identities:\n");
                for s in &r.service_identities {
                    write_service(&mut b, s, "\t\t\t");
                }
            }
            if !r.node_identities.is_empty() {
                b.push_str("\t\tNode Identities:\n");
                for n in &r.node_identities {
                    write_node(&mut b, n, "\t\t\t");
                }
            }
        }
    }
    b.push_str("=== End of Authorizer Layer 0: Token ===\n");
    b.push_str("=== Start of Authorizer Layer 2: Agent Configuration Defaults (Inherited) ===\n");
    b.push_str("Description: Defined at request-time by the agent that resolves the ACL token; other agents may have different configuration defaults\n");
    line!(b, "Resolved By Agent: {:?}\n", x.resolved_by_agent);
    line!(b, "Default Policy: {}", x.agent_acl_default_policy);
    b.push_str("\tDescription: Backstop rule used if no preceding layer has a matching rule (refer to default_policy option in agent configuration)\n\n");
    line!(b, "Down Policy: {}", x.agent_acl_down_policy);
    b.push_str("\tDescription: Defines what to do if this Token's information cannot be read from the primary_datacenter (refer to down_policy option in agent configuration)\n\n");
    b
}

// === roles ===

/// One role.
pub fn role(r: &Role, meta: bool) -> String {
    let mut b = String::new();
    line!(b, "ID:           {}", r.id);
    line!(b, "Name:         {}", r.name);
    if !r.partition.is_empty() {
        line!(b, "Partition:    {}", r.partition);
    }
    if !r.namespace.is_empty() {
        line!(b, "Namespace:    {}", r.namespace);
    }
    line!(b, "Description:  {}", r.description);
    if meta {
        line!(b, "Hash:         {}", r.hash.hex());
        line!(b, "Create Index: {}", r.create_index);
        line!(b, "Modify Index: {}", r.modify_index);
    }
    links_section(&mut b, "Policies", &r.policies, "");
    identities(
        &mut b,
        &r.service_identities,
        &r.node_identities,
        &r.templated_policies,
        "",
    );
    b
}

/// The role list: a block per role, indented under its name.
pub fn role_list(list: &[Role], meta: bool) -> String {
    let mut b = String::new();
    for r in list {
        line!(b, "{}:", r.name);
        line!(b, "   ID:           {}", r.id);
        if !r.partition.is_empty() {
            line!(b, "   Partition:    {}", r.partition);
        }
        if !r.namespace.is_empty() {
            line!(b, "   Namespace:    {}", r.namespace);
        }
        line!(b, "   Description:  {}", r.description);
        if meta {
            line!(b, "   Hash:         {}", r.hash.hex());
            line!(b, "   Create Index: {}", r.create_index);
            line!(b, "   Modify Index: {}", r.modify_index);
        }
        links_section(&mut b, "Policies", &r.policies, "   ");
        identities(
            &mut b,
            &r.service_identities,
            &r.node_identities,
            &r.templated_policies,
            "   ",
        );
    }
    b
}

// === templated policies ===

/// One templated policy: its input variables and an example.
pub fn templated_policy(t: &TemplatedPolicyResponse, meta: bool) -> String {
    let mut b = String::new();
    line!(b, "Name:            {}", t.template_name);
    line!(b, "Description:     {}", t.description);
    b.push_str("Input variables:");
    let name_var = match t.template_name.as_str() {
        "builtin/service" => Some(("The name of the service", "api")),
        "builtin/node" => Some(("The node name", "node-1")),
        "builtin/api-gateway" => Some(("The api gateway service name", "api-gateway")),
        _ => None,
    };
    match (name_var, t.template_name.as_str()) {
        (Some((what, example)), name) => {
            line!(b, "\n\tName: String - Required - {what}.");
            b.push_str("Example usage:\n");
            line!(
                b,
                "\tconsul acl token create -templated-policy {name} -var name:{example}"
            );
        }
        (None, name @ ("builtin/dns" | "builtin/nomad-server" | "builtin/nomad-client")) => {
            b.push_str(" None\n");
            b.push_str("Example usage:\n");
            line!(b, "\tconsul acl token create -templated-policy {name}");
        }
        (None, _) => b.push_str("   None\n"),
    }
    if meta {
        if !t.schema.is_empty() {
            line!(b, "Schema:\n{}\n", t.schema);
        }
        line!(b, "Raw Template:\n{}", t.template);
    }
    b
}

/// The template names, sorted, one per line.
pub fn templated_policy_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut names: Vec<&str> = names.collect();
    names.sort_unstable();
    names.iter().map(|n| format!("{n}\n")).collect()
}

// === auth methods ===

/// One auth method; the config as two-space-indented JSON.
pub fn auth_method(m: &AuthMethod, meta: bool) -> String {
    let mut b = String::new();
    line!(b, "Name:          {}", m.name);
    line!(b, "Type:          {}", m.method_type);
    if !m.partition.is_empty() {
        line!(b, "Partition:     {}", m.partition);
    }
    if !m.namespace.is_empty() {
        line!(b, "Namespace:     {}", m.namespace);
    }
    if !m.display_name.is_empty() {
        line!(b, "DisplayName:   {}", m.display_name);
    }
    line!(b, "Description:   {}", m.description);
    if !m.max_token_ttl.is_zero() {
        line!(
            b,
            "MaxTokenTTL:   {}",
            meshgate_types::duration::format(m.max_token_ttl)
        );
    }
    if !m.token_locality.is_empty() {
        line!(b, "TokenLocality: {}", m.token_locality);
    }
    if meta {
        line!(b, "Create Index:  {}", m.create_index);
        line!(b, "Modify Index:  {}", m.modify_index);
    }
    b.push_str("Config:\n");
    let config = m.config.clone().map(Value::Object).unwrap_or(Value::Null);
    b.push_str(&super::go_json_indent(&config, b"  "));
    b
}

/// The auth method list.
pub fn auth_method_list(list: &[AuthMethod], meta: bool) -> String {
    let mut b = String::new();
    for m in list {
        line!(b, "{}:", m.name);
        line!(b, "   Type:         {}", m.method_type);
        if !m.partition.is_empty() {
            line!(b, "   Partition:    {}", m.partition);
        }
        if !m.namespace.is_empty() {
            line!(b, "   Namespace:    {}", m.namespace);
        }
        if !m.display_name.is_empty() {
            line!(b, "   DisplayName:  {}", m.display_name);
        }
        line!(b, "   Description:  {}", m.description);
        if meta {
            line!(b, "   Create Index: {}", m.create_index);
            line!(b, "   Modify Index: {}", m.modify_index);
        }
    }
    b
}

// === binding rules ===

fn binding_rule_lines(b: &mut String, r: &BindingRule, meta: bool, indent: &str) {
    if !r.partition.is_empty() {
        line!(b, "{indent}Partition:    {}", r.partition);
    }
    if !r.namespace.is_empty() {
        line!(b, "{indent}Namespace:    {}", r.namespace);
    }
    line!(b, "{indent}AuthMethod:   {}", r.auth_method);
    line!(b, "{indent}Description:  {}", r.description);
    line!(b, "{indent}BindType:     {}", r.bind_type);
    line!(b, "{indent}BindName:     {}", r.bind_name);
    if let Some(v) = r.bind_vars.as_ref().filter(|v| !v.name.is_empty()) {
        // The item sits at 5 spaces on its own and at 6 in the list.
        let item = if indent.is_empty() { "     " } else { "      " };
        line!(b, "{indent}BindVars:     \n{item}- Name: {}", v.name);
    }
    line!(b, "{indent}Selector:     {}", r.selector);
    if meta {
        line!(b, "{indent}Create Index: {}", r.create_index);
        line!(b, "{indent}Modify Index: {}", r.modify_index);
    }
}

/// One binding rule.
pub fn binding_rule(r: &BindingRule, meta: bool) -> String {
    let mut b = String::new();
    line!(b, "ID:           {}", r.id);
    binding_rule_lines(&mut b, r, meta, "");
    b
}

/// The binding rule list, each rule under its ID.
pub fn binding_rule_list(list: &[BindingRule], meta: bool) -> String {
    let mut b = String::new();
    for r in list {
        line!(b, "{}:", r.id);
        binding_rule_lines(&mut b, r, meta, "   ");
    }
    b
}

#[cfg(test)]
mod tests {
    use super::super::types::{GoBytes, GoTime, Link, TemplateVars};
    use super::*;

    fn sample_token() -> Token {
        Token {
            create_index: 5,
            modify_index: 10,
            accessor_id: "fbd2447f-7479-4329-ad13-b021d74f86ba".into(),
            secret_id: "869c6e91-4de9-4dab-b56e-87548435f9c6".into(),
            description: "test token".into(),
            create_time: GoTime::parse("2020-05-22T18:52:31Z").unwrap(),
            hash: GoBytes(Some(b"abcdefgh".to_vec())),
            ..Default::default()
        }
    }

    #[test]
    fn basic_token() {
        assert_eq!(
            token(&sample_token(), false),
            "AccessorID:       fbd2447f-7479-4329-ad13-b021d74f86ba\n\
             SecretID:         869c6e91-4de9-4dab-b56e-87548435f9c6\n\
             Description:      test token\n\
             Local:            false\n\
             Create Time:      2020-05-22 18:52:31 +0000 UTC\n"
        );
    }

    #[test]
    fn complex_token_with_meta() {
        let mut t = sample_token();
        t.expiration_time = GoTime::parse("2020-05-22T19:52:31Z");
        t.auth_method = "bar".into();
        t.policies = vec![Link {
            id: "beb04680-815b-4d7c-9e33-3d707c24672c".into(),
            name: "hobbiton".into(),
        }];
        t.service_identities = vec![ServiceIdentity {
            service_name: "gardener".into(),
            datacenters: vec!["middleearth-northwest".into()],
        }];
        t.node_identities = vec![NodeIdentity {
            node_name: "bagend".into(),
            datacenter: "middleearth-northwest".into(),
        }];
        t.templated_policies = vec![
            TemplatedPolicy {
                template_name: "builtin/service".into(),
                template_variables: Some(TemplateVars { name: "web".into() }),
                datacenters: vec!["a".into(), "b".into()],
            },
            TemplatedPolicy {
                template_name: "builtin/node".into(),
                template_variables: Some(TemplateVars { name: "api".into() }),
                datacenters: vec![],
            },
        ];
        let out = token(&t, true);
        assert!(
            out.contains(
                "Auth Method:      bar (Namespace: )\n\
                 Create Time:      2020-05-22 18:52:31 +0000 UTC\n\
                 Expiration Time:  2020-05-22 19:52:31 +0000 UTC\n\
                 Hash:             6162636465666768\n\
                 Create Index:     5\n\
                 Modify Index:     10\n\
                 Policies:\n\
                 \x20  beb04680-815b-4d7c-9e33-3d707c24672c - hobbiton\n\
                 Service Identities:\n\
                 \x20  gardener (Datacenters: middleearth-northwest)\n\
                 Node Identities:\n\
                 \x20  bagend (Datacenter: middleearth-northwest)\n\
                 Templated Policies:\n\
                 \x20  builtin/service\n\
                 \x20     Name: web\n\
                 \x20     Datacenters: a, b\n\
                 \x20  builtin/node\n\
                 \x20     Name: api\n\
                 \x20     Datacenters: all\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn policy_without_datacenters_keeps_the_padding() {
        let p = Policy {
            id: "i".into(),
            name: "n".into(),
            rules: "acl = \"read\"".into(),
            ..Default::default()
        };
        assert_eq!(
            policy(&p, false),
            "ID:           i\nName:         n\nDescription:  \nDatacenters:  \nRules:\nacl = \"read\""
        );
    }

    #[test]
    fn binding_rule_vars() {
        let r = BindingRule {
            id: "x".into(),
            auth_method: "m".into(),
            bind_type: "templated-policy".into(),
            bind_name: "builtin/service".into(),
            bind_vars: Some(TemplateVars {
                name: "${value.name}".into(),
            }),
            ..Default::default()
        };
        assert_eq!(
            binding_rule(&r, false),
            "ID:           x\nAuthMethod:   m\nDescription:  \nBindType:     templated-policy\nBindName:     builtin/service\nBindVars:     \n     - Name: ${value.name}\nSelector:     \n"
        );
    }
}
