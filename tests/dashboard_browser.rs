//! The admin dashboard page in a real browser: headless Chromium driven
//! through chromedriver (WebDriver) against the classroom example's router
//! on loopback. Signs in (a wrong token first), checks the route table
//! against `/stats`, invalidates a tag from the form, tries to purge
//! everything without the typed confirmation, looks at phone width, and
//! saves screenshots under `target/`. Skips with a line saying so when
//! `chromium` or `chromedriver` is missing, unless
//! `TAGCACHE_REQUIRE_BROWSER=1` (as CI sets).

#[path = "../examples/classroom/app.rs"]
mod app;
mod support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use support::classroom::{assert_hit, assert_not_hit, prometheus};
use support::deadline::{backstop, eventually, within};
use support::http::Server;
use tagcache::Cache;

use app::{router, with_admin, AppConfig, ADMIN_PATH};

const TOKEN: &str = "dashboard-browser-test-token";

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// chromedriver and the browser, or `None` after the skip line.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let found = (
        find_on_path("chromedriver"),
        find_on_path("chromium").or_else(|| find_on_path("chromium-browser")),
    );
    if let (Some(driver), Some(chromium)) = found {
        return Some((driver, chromium));
    }
    if std::env::var("TAGCACHE_REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!("chromium and chromedriver are needed (TAGCACHE_REQUIRE_BROWSER=1): apt-get install chromium chromium-driver");
    }
    println!("SKIP: chromium or chromedriver not found on PATH; set TAGCACHE_REQUIRE_BROWSER=1 to fail instead");
    None
}

/// chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver(binary: &PathBuf) -> Driver {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver { child, port };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    eventually("chromedriver listens", || async move {
        TcpStream::connect(addr).is_ok()
    })
    .await;
    driver
}

/// `POST /session/{id}/se/log {"type": "browser"}`: chromedriver's log of
/// the page's console (needs `goog:loggingPrefs`).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// Console entries at level SEVERE (errors) since the last call.
async fn console_errors(client: &Client) -> Vec<String> {
    let log = client
        .issue_cmd(BrowserLog)
        .await
        .expect("read the browser log");
    log.as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["level"] == "SEVERE")
                .map(|e| e["message"].to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn find(client: &Client, css: &str) -> Element {
    within(
        format!("{css} never appeared"),
        client.wait().forever().for_element(Locator::Css(css)),
    )
    .await
    .unwrap_or_else(|e| panic!("{css}: {e}"))
}

/// Waits until the element's text satisfies `test`; returns it. (The
/// page polls every few seconds, so this polls too, with a deadline.)
async fn text_until(client: &Client, css: &str, test: impl Fn(&str) -> bool) -> String {
    within(format!("the text of {css} never matched"), async {
        loop {
            if let Ok(element) = client.find(Locator::Css(css)).await {
                if let Ok(text) = element.text().await {
                    if test(&text) {
                        return text;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

async fn type_into(client: &Client, css: &str, text: &str) {
    let field = find(client, css).await;
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

async fn click(client: &Client, css: &str) {
    find(client, css).await.click().await.expect("click");
}

async fn screenshot(client: &Client, name: &str) -> PathBuf {
    let png = client.screenshot().await.expect("screenshot");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&dir).expect("target dir");
    let path = dir.join(name);
    std::fs::write(&path, png).expect("write the screenshot");
    println!("screenshot saved to {}", path.display());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_signs_in_shows_routes_and_invalidates_from_its_forms() {
    let Some((driver_binary, chromium)) = browser() else {
        return;
    };
    backstop(async {
        let cache = Cache::builder().cache_name("classroom").build();
        let app = router(AppConfig {
            origin_delay: Duration::ZERO,
            cache: cache.clone(),
            metrics: Some(prometheus()),
        });
        let server = Server::serve(with_admin(app, &cache, TOKEN).unwrap()).await;
        let list = "/api/teachers/1/sessions";
        server.get(list).await;
        assert_hit(&server.get(list).await, "second GET");
        server.get("/api/sessions/2").await;

        let driver = start_driver(&driver_binary).await;
        let mut capabilities = Capabilities::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000"],
            }),
        );
        capabilities.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let client = within(
            "chromedriver never opened a session",
            ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{}", driver.port)),
        )
        .await
        .expect("a WebDriver session");

        let dashboard = format!("http://{}{ADMIN_PATH}", server.addr);
        client.goto(&dashboard).await.expect("open the dashboard");

        // A wrong token is refused, and says so.
        type_into(&client, "#token", "not-the-token-at-all").await;
        click(&client, "#login-submit").await;
        text_until(&client, "#login-error", |t| t.contains("refused")).await;
        assert!(!find(&client, "#dashboard")
            .await
            .is_displayed()
            .await
            .unwrap());

        // The right one opens the dashboard.
        type_into(&client, "#token", TOKEN).await;
        click(&client, "#login-submit").await;
        text_until(&client, "#cache-name", |t| t == "classroom").await;
        text_until(&client, "#health", |t| t == "healthy").await;

        // The route table matches /stats.
        let stats = server
            .get_as(&format!("{ADMIN_PATH}/stats"), TOKEN)
            .await
            .json();
        let route = |name: &str| -> Value {
            stats["routes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["route"] == name)
                .unwrap()
                .clone()
        };
        let listed = route("session-list");
        for field in ["hits", "misses", "bypasses", "not_stored"] {
            let css = format!("#routes tr[data-route=\"session-list\"] td[data-field=\"{field}\"]");
            let shown = text_until(&client, &css, |t| !t.is_empty()).await;
            assert_eq!(shown, listed[field].to_string(), "{field}");
        }
        let detail = "#routes tr[data-route=\"session-detail\"] td[data-field=\"misses\"]";
        assert_eq!(
            text_until(&client, detail, |t| !t.is_empty()).await,
            route("session-detail")["misses"].to_string()
        );
        // Sorting by route puts them in name order.
        click(&client, "#routes th button[data-sort=\"route\"]").await;
        let first = text_until(
            &client,
            "#routes tbody tr:first-child td[data-field=\"route\"]",
            |t| !t.is_empty(),
        )
        .await;
        assert_eq!(first, "admin-dashboard");

        // The entries browser lists what is cached.
        text_until(&client, "#entries tbody", |t| t.contains(list)).await;

        // The chart follows live traffic: a bounded stream of requests
        // until it has drawn several seconds of it.
        let traffic = {
            let addr = server.addr;
            support::deadline::spawn("traffic", async move {
                let client = Server::connect(addr);
                for _ in 0..2000 {
                    client.get("/api/teachers/2/sessions").await;
                    client.get("/api/sessions/3").await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        eventually("the chart drew five seconds of traffic", || async {
            let points = client
                .execute(
                    "const line = document.getElementById('chart-requests').getAttribute('points');\
                     const max = Number(document.getElementById('chart-max').textContent);\
                     return line.trim() === '' ? 0 : Math.min(line.trim().split(' ').length, max);",
                    vec![],
                )
                .await
                .expect("read the chart");
            points.as_u64().unwrap_or(0) >= 5
        })
        .await;
        traffic.abort();

        screenshot(&client, "dashboard-1280.png").await;

        // Invalidating a tag from the form: the next GET is a miss.
        type_into(&client, "#invalidate-tags", "teacher:1").await;
        click(&client, "#invalidate-submit").await;
        text_until(&client, "#invalidate-result", |t| {
            t.contains("Invalidated teacher:1")
        })
        .await;
        assert_not_hit(
            &server.get(list).await,
            "GET after the form invalidated teacher:1",
        );
        assert_hit(&server.get(list).await, "GET after the refill");
        text_until(&client, "#invalidations tbody", |t| {
            t.contains("teacher:1") && t.contains("admin")
        })
        .await;

        // Purging a key from the form: the next GET of it is a miss.
        let detail_path = "/api/sessions/7"; // teacher 2's: untouched so far
        server.get(detail_path).await;
        assert_hit(
            &server.get(detail_path).await,
            "the detail before the purge",
        );
        type_into(&client, "#purge-key", detail_path).await;
        click(&client, "#purge-submit").await;
        text_until(&client, "#purge-result", |t| t == "Purged.").await;
        assert_not_hit(
            &server.get(detail_path).await,
            "GET after the form purged the key",
        );

        // Purge-all refuses without the typed confirmation.
        type_into(&client, "#purge-all-confirm", "").await;
        click(&client, "#purge-all-submit").await;
        text_until(&client, "#purge-all-result", |t| {
            t.contains("Type the cache's name")
        })
        .await;
        type_into(&client, "#purge-all-confirm", "Classroom").await;
        click(&client, "#purge-all-submit").await;
        text_until(&client, "#purge-all-result", |t| {
            t.contains("Type the cache's name")
        })
        .await;
        assert_hit(&server.get(list).await, "GET after refused purges");

        // Phone width: nothing wider than the screen.
        client.set_window_size(390, 844).await.expect("resize");
        let overflow = client
            .execute(
                "return document.documentElement.scrollWidth - window.innerWidth;",
                vec![],
            )
            .await
            .expect("measure");
        assert!(
            overflow.as_f64().unwrap_or(1.0) <= 0.0,
            "the page is {overflow} px too wide at 390 px"
        );
        screenshot(&client, "dashboard-phone.png").await;

        let errors = console_errors(&client).await;
        // The refused token is a 401 the browser logs as a failed resource.
        let unexpected: Vec<_> = errors.iter().filter(|e| !e.contains("401")).collect();
        assert!(unexpected.is_empty(), "console errors: {unexpected:?}");
        client.close().await.expect("close the session");
        drop(driver);
    })
    .await;
}
