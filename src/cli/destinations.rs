//! `switchboard destinations list|show|pause|resume`: the receivers, their health and
//! backlog, and the operator's pause.

use reqwest::Method;

use super::args::{DestinationsAction, DestinationsArgs};
use super::output::{self, Column};
use super::provisioning::{paging, segment, show};
use super::{CliError, Client};

/// The columns of `destinations list`.
const DESTINATION_COLUMNS: &[Column<'_>] = &[
    ("ID", "/id"),
    ("STATE", "/state"),
    ("GRADE", "/grade"),
    ("BACKLOG", "/backlog"),
    ("OLDEST_S", "/oldest_waiting_s"),
    ("URL", "/url"),
];

/// Runs `switchboard destinations …`.
pub async fn destinations(args: DestinationsArgs) -> Result<(), CliError> {
    let client = Client::new(&args.connection)?;
    let (id, action) = match args.action {
        DestinationsAction::List { page } => {
            let answer = client.get("/admin/destinations", &paging(&page)).await?;
            output::page(client.json, &answer, "destinations", DESTINATION_COLUMNS);
            return Ok(());
        }
        DestinationsAction::Show { id } => (id, None),
        DestinationsAction::Pause { id } => (id, Some("pause")),
        DestinationsAction::Resume { id } => (id, Some("resume")),
    };
    let path = format!("/admin/destinations/{}", segment(&id));
    let answer = match action {
        None => client.get(&path, &[]).await?,
        Some(verb) => {
            let request = client.request(Method::POST, &format!("{path}/{verb}"));
            client.send(request).await?
        }
    };
    show(&client, &answer);
    Ok(())
}
