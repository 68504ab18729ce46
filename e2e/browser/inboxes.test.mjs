// The pages a person is sent to besides the shop: Mailpit's inbox and the task
// monitor, opened in a real browser, each showing its content (not a blank page).
// cmd/devstack's make-run test runs this against its stack, with the variables below.
import { test, before, after, afterEach } from "node:test";
import { mkdirSync } from "node:fs";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const env = (name) => {
	const v = process.env[name];
	assert.ok(v, `${name} is not set`);
	return v;
};
const gateway = env("BAZAAR_URL");
const mailpit = env("MAILPIT_URL");
const shots = process.env.SCREENSHOT_DIR || new URL("./screenshots/", import.meta.url).pathname;
mkdirSync(shots, { recursive: true });

let browser;
before(async () => {
	// Debian's chromium; as root (CI) it runs only without its sandbox.
	browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
});
after(async () => {
	await browser?.close();
});
let lastPage; // the page each test leaves its screenshot of
afterEach(async (t) => {
	if (lastPage) await lastPage.screenshot({ path: `${shots}/${t.name.replace(/[^a-z0-9]+/gi, "-").toLowerCase()}.png`, fullPage: true });
});

// see waits for text on page, failing with where the page is and what it shows.
async function see(page, text) {
	try {
		await page.getByText(text).first().waitFor({ timeout: 20_000 });
	} catch (e) {
		const shown = (await page.locator("body").innerText().catch(() => "")).slice(0, 1500);
		assert.fail(`no "${text}" on ${page.url()} within 20s; the page shows:\n${shown}`);
	}
}

// A page that records the errors its scripts throw.
async function open(url) {
	const page = await browser.newPage();
	const errors = [];
	page.on("pageerror", (e) => errors.push(e.message));
	lastPage = page;
	await page.goto(url);
	return { page, errors };
}

test("Mailpit's inbox lists the e-mails the stack sent", async () => {
	const { page, errors } = await open(mailpit + "/");
	// Every sign-up gets a welcome e-mail; the e2e tests made many.
	await see(page, new RegExp(env("EXPECT_SUBJECT")));
	assert.deepEqual(errors, []);
});

test("the task monitor shows the services' queues once the admin signs in", async () => {
	const { page, errors } = await open(gateway + "/ops/tasks");
	await page.waitForURL(/\/ops\/login/);
	// Sign-ins are rate limited (10 a minute per address, 5 per account): a stack
	// that has just served other sign-ins may ask us to wait, as it asks anyone.
	for (const deadline = Date.now() + 90_000; ; ) {
		await page.fill("#email", env("BAZAAR_ADMIN_EMAIL"));
		await page.fill("#password", env("BAZAAR_ADMIN_PASSWORD"));
		await Promise.all([page.waitForLoadState("load"), page.press("#password", "Enter")]);
		const throttled = await page.getByText("Too many sign-in attempts").isVisible().catch(() => false);
		if (!throttled) break;
		assert.ok(Date.now() < deadline, "the sign-in stayed rate limited for 90s");
		await page.waitForTimeout(10_000); // the limiter's window, not synchronisation
		await page.goto(gateway + "/ops/login");
	}
	const monitor = page.getByRole("link", { name: "Open the task monitor" });
	if (await monitor.isVisible().catch(() => false)) await monitor.click();
	// asynqmon's queue table names the services' queues that have held tasks, e.g.
	// inventory:default.
	await see(page, /^(users|inventory|payments|orders|notifications):(critical|default|low)$/);
	assert.deepEqual(errors, []);
});
