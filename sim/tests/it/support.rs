//! Helpers shared by the simulator's integration tests.

use reqwest::Method;
use serde_json::Value;

/// A raw HTTP caller, so tests can send exactly what they want (bad bodies,
/// bad auth) rather than what the typed client would.
pub struct Raw {
    pub http: reqwest::Client,
    pub base: String,
    pub key: String,
}

impl Raw {
    pub fn new(sim: &lambda_sim::Sim) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: sim.api_url(),
            key: sim.api_key(),
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }
}
