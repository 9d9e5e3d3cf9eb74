//! The security and administration pages in headless Chromium against the real server:
//! turning 2FA on (QR code, first code, recovery codes), signing in with a code, an
//! administrator disabling a user whose open tab is then signed out at its next request, the
//! audit log with the chain check, and the registration tab. Screenshots go to
//! `screenshots/security-*.png` and `screenshots/admin-*.png`.

use std::time::{SystemTime, UNIX_EPOCH};

use totp_rs::{Algorithm, Secret, TOTP};

use crate::browser::{self, Browser};
use crate::common::{Client, TestServer};

/// The authenticator app: the code of `secret` at `offset_secs` from now.
fn app_code(secret: &str, offset_secs: u64) -> String {
    let bytes = Secret::Encoded(secret.to_owned()).to_bytes().unwrap();
    let app = TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes, None, String::new()).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    app.generate(now + offset_secs)
}

/// Signs `name` in through the sign-in form (password `{name}-password-123`).
async fn sign_in(b: &Browser, server: &TestServer, name: &str) {
    b.goto(&server.url("/login")).await;
    b.fill("#login", name).await;
    b.fill("#password", &format!("{name}-password-123")).await;
    b.click("button[type=submit]").await;
}

#[tokio::test]
async fn security_and_admin_pages_work_in_a_browser() {
    if let Err(reason) = browser::available() {
        if browser::skip_or_fail(&reason) {
            return;
        }
    }
    let server = TestServer::start();
    let page = reqwest::get(server.url("/")).await.unwrap().text().await.unwrap();
    if !page.contains("/boot.")
        && browser::skip_or_fail("the server was built without the web UI (scripts/build-web.sh)")
    {
        return;
    }
    let mut root = Client::new(&server);
    root.signup("root").await;
    Client::new(&server).signup("una").await;

    // Una turns 2FA on.
    let una = Browser::start("security", 1280, 900).await;
    sign_in(&una, &server, "una").await;
    una.wait_for("the chat", "location.pathname.startsWith('/c')").await;
    una.click(".account-links a[href='/security']").await;
    una.wait_for(
        "the security page",
        "document.querySelector('h1')?.textContent === 'Security'",
    )
    .await;
    una.wait_for(
        "this device in the sessions",
        "document.querySelector('.session .badge')",
    )
    .await;
    una.screenshot("01-security").await;
    una.click("#totp-start").await;
    let secret = una.text("#totp-secret").await;
    una.wait_for("the QR code", "document.querySelector('.qr svg')").await;
    una.screenshot("02-qr-code").await;
    una.fill("#totp-verify-code", "000000").await;
    una.click(".two-factor button[type=submit]").await;
    una.wait_for(
        "the wrong code's error",
        "document.querySelector('.two-factor .form-error')",
    )
    .await;
    una.fill("#totp-verify-code", &app_code(&secret, 0)).await;
    una.click(".two-factor button[type=submit]").await;
    una.wait_for(
        "ten recovery codes",
        "document.querySelectorAll('.recovery-codes li').length === 10",
    )
    .await;
    una.screenshot("03-recovery-codes").await;
    una.click(".row-actions .primary").await;
    una.wait_for("2FA on", "document.querySelector('.status-on')").await;

    // Signing in again needs a code (the next one: each code works once).
    una.click("a.back").await;
    una.click(".sidebar-bottom .ghost").await;
    una.wait_for("the sign-in page", "location.pathname === '/login'").await;
    sign_in(&una, &server, "una").await;
    una.wait_for("the code field", "document.querySelector('#totp-code')")
        .await;
    una.screenshot("04-code-asked").await;
    una.fill("#totp-code", &app_code(&secret, 30)).await;
    una.click("button[type=submit]").await;
    una.wait_for("signed in with the code", "location.pathname.startsWith('/c')")
        .await;

    // The administrator disables her while her tab is open.
    let admin = Browser::start("admin", 1280, 900).await;
    sign_in(&admin, &server, "root").await;
    admin
        .wait_for("the admin link", "document.querySelector('a.admin-link')")
        .await;
    admin.click("a.admin-link").await;
    admin
        .wait_for("una's row", "document.querySelector(\"tr[data-username='una']\")")
        .await;
    admin.screenshot("01-users").await;
    admin.click("tr[data-username='una'] .toggle-user").await;
    admin
        .wait_for(
            "una disabled",
            "document.querySelector(\"tr[data-username='una'] .state\")?.textContent === 'Disabled'",
        )
        .await;
    admin.screenshot("02-user-disabled").await;

    // Her tab's next request signs it out, saying why.
    una.click("a.nav-link[href='/documents']").await;
    una.wait_for(
        "una signed out",
        "location.pathname === '/login' && document.querySelector('.notice')?.textContent.includes('disabled')",
    )
    .await;
    una.screenshot("05-signed-out-disabled").await;

    // The audit log shows what happened; the chain is intact.
    admin.click("a.tab[href='/admin/audit']").await;
    admin
        .wait_for(
            "the disable entry",
            "document.querySelector(\"tr[data-action='admin.user_disable']\") && \
             document.querySelector(\"tr[data-action='auth.2fa_enable']\") && \
             document.querySelector(\"tr[data-outcome='INVALID_TOTP']\") !== null",
        )
        .await;
    admin.click("#audit-verify").await;
    admin
        .wait_for(
            "the intact chain",
            "document.querySelector('.verification')?.textContent.startsWith('Intact')",
        )
        .await;
    admin.screenshot("03-audit").await;

    // Registration by invitation, with a link to hand out.
    admin.click("a.tab[href='/admin/registration']").await;
    admin.click("button[data-policy='InviteOnly']").await;
    admin
        .wait_for(
            "the policy saved",
            "document.querySelector(\"button[data-policy='InviteOnly']\")?.getAttribute('aria-checked') === 'true'",
        )
        .await;
    admin.click("#invites-title ~ form button[type=submit]").await;
    admin
        .wait_for(
            "the invitation link",
            "document.querySelector('#invite-link')?.textContent.includes('/register?invite=')",
        )
        .await;
    admin.screenshot("04-registration").await;
    let r = root.get("/api/v1/admin/registration").await;
    assert_eq!(r.body["policy"], "invite_only");
    una.close().await;
    admin.close().await;
}
