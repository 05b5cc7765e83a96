//! GitHub-signed events posted to a router's `/hooks` route, for the process tests that need
//! an event id back (the event record, the console).

use crate::numbered::client;
use crate::signing::{sign, unix_now};

/// Posts `body` to `/hooks` at `ingress`, signed with `secret` as GitHub signs a `push`, with
/// delivery id `delivery`; asserts the 202 and returns the event id it carries.
pub async fn post_signed(ingress: &str, secret: &str, body: &str, delivery: &str) -> String {
    let mut request = client()
        .post(format!("http://{ingress}/hooks"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .body(body.to_owned());
    for (name, value) in sign("github", secret, body.as_bytes(), unix_now()) {
        request = request.header(name, value);
    }
    let answer = request.send().await.expect("post");
    assert_eq!(answer.status().as_u16(), 202);
    let json: serde_json::Value = answer.json().await.expect("json");
    json["id"].as_str().expect("id").to_owned()
}
