//! `switchboard partners|wabas|channels create|list|show`: provisioning from the command
//! line, so a quick start needs no curl. Keys the server issues are printed once, as the
//! server shows them once.

use serde_json::{json, Value};

use super::args::{ChannelsAction, ChannelsArgs, Page, PartnersAction, PartnersArgs};
use super::args::{WabasAction, WabasArgs};
use super::output::{self, Column};
use super::{CliError, Client};

/// The columns of `partners list`.
const PARTNER_COLUMNS: &[Column<'_>] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("WABAS", "/wabas"),
    ("SIGNING", "/signing"),
    ("CREATED", "/created_at"),
    ("WEBHOOK", "/webhook_url"),
];

/// The columns of `wabas list`.
const WABA_COLUMNS: &[Column<'_>] = &[
    ("WABA", "/waba_id"),
    ("PARTNER", "/partner_id"),
    ("CHANNELS", "/channels"),
    ("SIGNING", "/signing"),
    ("CREATED", "/created_at"),
    ("WEBHOOK", "/webhook/url"),
];

/// The columns of `channels list`.
const CHANNEL_COLUMNS: &[Column<'_>] = &[
    ("ID", "/id"),
    ("PHONE", "/phone_number"),
    ("PHONE_NUMBER_ID", "/phone_number_id"),
    ("WABA", "/waba_id"),
    ("PARTNER", "/partner_id"),
    ("ROUTE", "/route/type"),
    ("URL", "/route/webhook/url"),
];

/// Runs `switchboard partners …`.
pub async fn partners(args: PartnersArgs) -> Result<(), CliError> {
    let client = Client::new(&args.connection)?;
    match args.action {
        PartnersAction::Create { name } => {
            let created = client
                .post("/admin/partners", Some(&json!({ "name": name })))
                .await?;
            created_with_key(&client, &created, "Partner API key");
        }
        PartnersAction::List { page } => {
            let answer = client.get("/admin/partners", &paging(&page)).await?;
            output::page(client.json, &answer, "partners", PARTNER_COLUMNS);
        }
        PartnersAction::Show { id } => {
            let partner = client
                .get(&format!("/admin/partners/{}", segment(&id)), &[])
                .await?;
            show(&client, &partner);
        }
    }
    Ok(())
}

/// Runs `switchboard wabas …`.
pub async fn wabas(args: WabasArgs) -> Result<(), CliError> {
    let client = Client::new(&args.connection)?;
    match args.action {
        WabasAction::Create { partner, waba_id } => {
            let body = waba_id.map_or(json!({}), |id| json!({ "waba_id": id }));
            let path = format!("/admin/partners/{}/wabas", segment(&partner));
            let created = client.post(&path, Some(&body)).await?;
            show(&client, &created);
        }
        WabasAction::List { partner, page } => {
            let mut query = paging(&page);
            query.push(("partner", partner));
            let answer = client.get("/admin/wabas", &query).await?;
            output::page(client.json, &answer, "wabas", WABA_COLUMNS);
        }
        WabasAction::Show { waba_id } => {
            let waba = client
                .get(&format!("/admin/wabas/{}", segment(&waba_id)), &[])
                .await?;
            show(&client, &waba);
        }
    }
    Ok(())
}

/// Runs `switchboard channels …`.
pub async fn channels(args: ChannelsArgs) -> Result<(), CliError> {
    let client = Client::new(&args.connection)?;
    match args.action {
        ChannelsAction::Create {
            waba,
            phone,
            phone_number_id,
        } => {
            let mut body = json!({ "phone_number": phone });
            if let Some(id) = phone_number_id {
                body["phone_number_id"] = Value::String(id);
            }
            let path = format!("/admin/wabas/{}/channels", segment(&waba));
            let created = client.post(&path, Some(&body)).await?;
            created_with_key(&client, &created, "D360-API-KEY");
        }
        ChannelsAction::List {
            partner,
            waba,
            phone,
            page,
        } => {
            let mut query = paging(&page);
            query.extend([("partner", partner), ("waba", waba), ("phone", phone)]);
            let answer = client.get("/admin/channels", &query).await?;
            output::page(client.json, &answer, "channels", CHANNEL_COLUMNS);
        }
        ChannelsAction::Show { id } => {
            let channel = client
                .get(&format!("/admin/channels/{}", segment(&id)), &[])
                .await?;
            show(&client, &channel);
        }
    }
    Ok(())
}

/// The `after` and `limit` query parameters of a list.
pub fn paging(page: &Page) -> Vec<(&'static str, Option<String>)> {
    vec![
        ("after", page.after.clone()),
        ("limit", Some(page.limit.to_string())),
    ]
}

/// Prints one object: its JSON, or its fields.
pub fn show(client: &Client, value: &Value) {
    if client.json {
        output::json(value);
    } else {
        output::record(value);
    }
}

/// Prints a created object with the key it was issued, and says the key is shown once.
fn created_with_key(client: &Client, created: &Value, key_name: &str) {
    show(client, created);
    if !client.json {
        output::note(&format!(
            "The {key_name} (api_key) is shown only this once: keep it now."
        ));
    }
}

/// `raw` as one URL path segment (ids come from the command line, which may hold anything).
pub fn segment(raw: &str) -> String {
    let mut encoded = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}
