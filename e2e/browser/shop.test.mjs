// The storefront, clicked through in a real browser the way a person would: a new
// shopper signs up, searches, orders and watches the order confirm; a declined card;
// too much of a product; a checkout by keyboard alone; a forged form; and the admin
// changing a price and reading an order's story. Every page visited is checked with
// axe-core for serious accessibility violations. cmd/devstack's make-run test runs this
// against its stack (see inboxes.test.mjs for the variables).
//
// The tests in this file run in order and share two browser contexts, a shopper's and
// the admin's: sign-ins are rate limited per address, and each test signing in afresh
// would spend the limit the rest of the suite needs.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const env = (name) => {
	const v = process.env[name];
	assert.ok(v, `${name} is not set`);
	return v;
};
const gateway = env("BAZAAR_URL");
const mailpit = env("MAILPIT_URL");
const shots = process.env.SCREENSHOT_DIR || new URL("./screenshots/", import.meta.url).pathname;
mkdirSync(shots, { recursive: true });

// One run's names: products and the shopper are this run's own, so that other tests
// on the same stack (and earlier runs) change nothing these tests count.
const run = Date.now().toString(36);
const lamp = `Desk lamp ${run}`;
const mug = `Tea mug ${run}`;
const shopper = { name: "Browser Shopper", email: `shopper-${run}@example.com`, password: "browser-pass-123" };

let browser, shop, admin;
let lastPage; // the page each test leaves its screenshot of
let confirmedOrder; // the first test's order, whose story the admin reads

before(async () => {
	// Debian's chromium; as root (CI) it runs only without its sandbox.
	browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
	shop = await browser.newContext({ baseURL: gateway });
	admin = await browser.newContext({ baseURL: gateway });
});
after(async () => {
	await browser?.close();
});
afterEach(async (t) => {
	if (lastPage) await lastPage.screenshot({ path: `${shots}/${t.name.replace(/[^a-z0-9]+/gi, "-").toLowerCase()}.png`, fullPage: true });
});

// open opens path in ctx in a page that fails the test on a script error.
async function open(ctx, path) {
	const page = await ctx.newPage();
	page.on("pageerror", (e) => assert.fail(`script error on ${page.url()}: ${e.message}`));
	await page.goto(path);
	lastPage = page;
	return page;
}

// see waits for text on page, failing with where the page is and what it shows.
async function see(page, text, timeout = 20_000) {
	try {
		await page.getByText(text).first().waitFor({ timeout });
	} catch {
		const shown = (await page.locator("body").innerText().catch(() => "")).slice(0, 1500);
		assert.fail(`no ${text} on ${page.url()} within ${timeout / 1000}s; the page shows:\n${shown}`);
	}
}

// accessible runs axe-core on the page and fails on any serious or critical violation.
// It is evaluated by the browser's debugging protocol, which the page's policy (no
// inline scripts) does not govern, rather than added to the page as a script.
async function accessible(page) {
	await page.evaluate(axeSource);
	const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
	const serious = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
	assert.deepEqual(serious.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`), [],
		`accessibility violations on ${page.url()}`);
}

// signIn signs ctx in as email, waiting out the sign-in rate limit if a stack that has
// just served other sign-ins asks to (it asks anyone the same).
async function signIn(ctx, email, password) {
	const page = await open(ctx, "/login");
	for (const deadline = Date.now() + 90_000; ; ) {
		await page.fill("#email", email);
		await page.fill("#password", password);
		await Promise.all([page.waitForLoadState("load"), page.click("button:text('Sign in')")]);
		if (!(await page.getByText("going a little fast").isVisible().catch(() => false))) break;
		assert.ok(Date.now() < deadline, "sign-in stayed rate limited for 90s");
		await page.waitForTimeout(10_000); // the limiter's window, not synchronisation
	}
	await see(page, "You are signed in");
	return page;
}

// orderPage places the cart's order with method, from the checkout page.
async function checkout(page, method) {
	await page.goto("/checkout");
	await accessible(page);
	await page.check(`#pm-${method}`);
	await page.click("button:text('Place order')");
	await page.waitForURL(/\/orders\/[0-9a-f-]{36}$/);
	return page.url().split("/").pop();
}

// stockOf reads a product page's stock line.
async function stockOf(page, name) {
	await page.goto("/?q=" + encodeURIComponent(name));
	await page.getByRole("link", { name }).click();
	return page.locator("#stock").innerText();
}

test("the admin adds the products the shopper will find", async () => {
	const page = await signIn(admin, env("BAZAAR_ADMIN_EMAIL"), env("BAZAAR_ADMIN_PASSWORD"));
	for (const [name, sku, price, stock] of [[lamp, `LAMP-${run}`, "12.50", "5"], [mug, `MUG-${run}`, "7", "3"]]) {
		await page.goto("/admin/products");
		await page.fill("#name", name);
		await page.fill("#sku", sku);
		await page.fill("#description", `A ${name.toLowerCase()} for the browser tests.`);
		await page.fill("#price", price);
		await page.fill("#stock", stock);
		await page.click("button:text('Create product')");
		await see(page, "Product created");
	}
	await accessible(page);
	await page.goto("/admin");
	await see(page, "System status");
	await accessible(page);
});

test("a new shopper signs up, searches, orders two products with a Visa and watches it confirm", async () => {
	const page = await open(shop, "/");
	await accessible(page);
	await page.screenshot({ path: `${shots}/readme-catalogue.png` });
	await page.click("text=Create account");
	await page.fill("#name", shopper.name);
	await page.fill("#email", shopper.email);
	await page.fill("#password", shopper.password);
	await accessible(page);
	await page.click("button:text('Create account')");
	await see(page, "Your account is ready");

	for (const [name, qty] of [[lamp, "2"], [mug, "1"]]) {
		await page.fill("#q", name);
		await page.press("#q", "Enter");
		await see(page, `match “${name}”`);
		await accessible(page);
		await page.getByRole("link", { name }).click();
		await page.fill("#quantity", qty);
		await page.click("button:text('Add to cart')");
		await see(page, "Added to your cart");
		await accessible(page);
	}
	await page.goto("/cart");
	await see(page, "32.00 EUR"); // 2 × 12.50 + 7.00
	await accessible(page);

	// The status must change on the page itself: no navigation after it opens.
	const id = await checkout(page, "pm_card_visa");
	let navigations = 0;
	page.on("framenavigated", (f) => { if (f === page.mainFrame()) navigations++; });
	await see(page, /^Confirmed$/, 30_000);
	assert.equal(navigations, 0, "the page reloaded to show the status");
	await accessible(page);
	await page.screenshot({ path: `${shots}/readme-order-confirmed.png`, fullPage: true });
	confirmedOrder = id;

	// The confirmation, in the shop's inbox and in Mailpit's.
	const subject = `Your order ${id.slice(-8).toUpperCase()} is confirmed`;
	for (const deadline = Date.now() + 30_000; ; ) {
		await page.goto("/inbox");
		if (await page.getByText(subject).isVisible()) break;
		assert.ok(Date.now() < deadline, `no "${subject}" in the inbox within 30s`);
		await page.waitForTimeout(500);
	}
	await accessible(page);
	const mail = await browser.newPage();
	await mail.goto(`${mailpit}/search?q=${encodeURIComponent(shopper.email)}`);
	await see(mail, subject);
	await mail.close();
});

test("a declined card cancels the order with the reason, and the stock comes back", async () => {
	const page = await open(shop, "/");
	const before = await stockOf(page, mug);
	assert.equal(before, "2 in stock");
	await page.click("button:text('Add to cart')");
	await see(page, "Added to your cart");
	await checkout(page, "pm_card_chargeDeclined");
	await see(page, "Cancelled: the card was declined", 30_000);
	await accessible(page);
	// The reservation is released by the saga's compensation: poll the product page.
	for (const deadline = Date.now() + 30_000; ; ) {
		if ((await stockOf(page, mug)) === before) break;
		assert.ok(Date.now() < deadline, `the stock of ${mug} did not come back to "${before}" within 30s`);
		await page.waitForTimeout(500);
	}
});

test("ordering more than the stock says what is left", async () => {
	const page = await open(shop, "/");
	await stockOf(page, mug);
	await page.fill("#quantity", "5");
	await page.click("button:text('Add to cart')");
	await see(page, "Sorry, there are only 2 in stock.");
	assert.equal(await page.getAttribute("#quantity", "aria-invalid"), "true");
	await accessible(page);

	// A cart that asks for more than there is (the stock fell since it was filled)
	// cannot be checked out, and says why.
	await page.fill("#quantity", "1");
	await page.click("button:text('Add to cart')");
	await page.goto("/cart");
	await page.getByLabel(`Quantity of ${mug}`).fill("3");
	await page.getByRole("button", { name: "Update" }).click();
	await see(page, "Only 2 in stock.");
	await page.goto("/checkout");
	await see(page, "out of stock, or not in the quantity you asked for");
	await page.click("button:text('Place order')");
	await see(page, "out of stock, or not in the quantity you asked for");
	await page.getByRole("link", { name: "Change your cart" }).click();
	await page.getByRole("button", { name: `Remove ${mug}` }).click();
	await see(page, "Your cart is empty");
});

// tab presses Tab until the focused element matches the CSS selector (and has the
// text, when given), failing after 60.
async function tabTo(page, selector, text) {
	for (let i = 0; i < 60; i++) {
		await page.keyboard.press("Tab");
		const here = await page.evaluate(([s, t]) => {
			const el = document.activeElement;
			return !!el && el.matches(s) && (t === undefined || el.textContent.trim() === t);
		}, [selector, text]);
		if (here) {
			// Focus must be visible: the element is outlined.
			const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
			assert.notEqual(outline, "none", `the focus on ${selector} is not visible`);
			return;
		}
	}
	assert.fail(`Tab never reached ${selector} ${text ?? ""} on ${page.url()}`);
}

test("a shopper checks out with the keyboard alone", async () => {
	const page = await open(shop, "/");
	await tabTo(page, "#q");
	await page.keyboard.type(lamp);
	await page.keyboard.press("Enter");
	await see(page, `match “${lamp}”`);
	await tabTo(page, "a", lamp);
	await page.keyboard.press("Enter");
	await see(page, "Add to cart");
	await tabTo(page, "#quantity");
	await page.keyboard.press("Control+A");
	await page.keyboard.type("1");
	await tabTo(page, "button", "Add to cart");
	await page.keyboard.press("Enter");
	await see(page, "Added to your cart");
	await tabTo(page, "a[href='/cart']");
	await page.keyboard.press("Enter");
	await see(page, "Check out");
	await tabTo(page, "a", "Check out");
	await page.keyboard.press("Enter");
	await see(page, "Pay with a test card");
	await tabTo(page, "input[name=payment_method]:checked");
	assert.ok(await page.isChecked("#pm-pm_card_visa"));
	await tabTo(page, "button", "Place order");
	await page.keyboard.press("Enter");
	await page.waitForURL(/\/orders\/[0-9a-f-]{36}$/);
	await see(page, /^Confirmed$/, 30_000);
});

test("browsing, ordering and cancelling work with JavaScript off", async () => {
	// The shopper's session and cart, in a browser that runs no script.
	const plain = await browser.newContext({ baseURL: gateway, javaScriptEnabled: false });
	await plain.addCookies(await shop.cookies());
	const page = await plain.newPage();
	lastPage = page;
	await page.goto("/?q=" + encodeURIComponent(lamp));
	await page.getByRole("link", { name: lamp }).click();
	await page.fill("#quantity", "1");
	await page.click("button:text('Add to cart')");
	await see(page, "Added to your cart");
	await page.goto("/checkout");
	await page.check("#pm-pm_card_visa");
	await page.click("button:text('Place order')");
	await page.waitForURL(/\/orders\/[0-9a-f-]{36}$/);
	// Without the script the page does not change by itself; reloading shows the news.
	for (const deadline = Date.now() + 30_000; ; ) {
		if ((await page.locator("#order-status").innerText()) === "Confirmed") break;
		assert.ok(Date.now() < deadline, "the order was not confirmed within 30s");
		await page.waitForTimeout(500);
		await page.reload();
	}
	// The shopper changes their mind: the order is undone, stock back and money refunded.
	await page.getByRole("button", { name: "Cancel this order" }).click();
	await see(page, "Cancellation requested");
	for (const deadline = Date.now() + 30_000; ; ) {
		if ((await page.locator("#order-status").innerText()).startsWith("Cancelled: you asked to cancel it")) break;
		assert.ok(Date.now() < deadline, "the cancellation did not finish within 30s");
		await page.waitForTimeout(500);
		await page.reload();
	}
	await page.goto("/orders");
	await see(page, "Cancelled: you asked to cancel it");
	// No axe-core here: it needs the page's timers, which do not run with scripts off
	// (the same pages are checked with scripts on in the other tests).
});

test("a form posted without its CSRF token is refused", async () => {
	const page = await open(shop, "/");
	// The shopper's own browser, cookies and all, posting a form with no token, and
	// one with a token that is not the browser's.
	for (const form of [{ product_id: "00000000-0000-0000-0000-000000000000", quantity: "1" },
		{ product_id: "00000000-0000-0000-0000-000000000000", quantity: "1", csrf_token: "forged" }]) {
		const res = await page.request.post("/cart", { form, maxRedirects: 0 });
		assert.equal(res.status(), 403, `a post with ${JSON.stringify(form)} answered ${res.status()}`);
		assert.match(await res.text(), /did not come from this shop/);
	}
	const res = await page.request.post("/logout", { form: {}, maxRedirects: 0 });
	assert.equal(res.status(), 403);
	await page.goto("/orders");
	await see(page, "Your orders"); // still signed in
});

test("the admin changes a price and the catalogue shows it on the next load", async () => {
	const page = await open(admin, "/admin/products");
	await page.getByRole("link", { name: lamp }).click();
	await page.fill("#price", "15.25");
	await page.click("button:text('Save')");
	await see(page, "Saved.");
	await accessible(page);
	const shopper = await open(shop, "/?q=" + encodeURIComponent(lamp));
	await see(shopper, "15.25 EUR");
});

test("the admin reads a confirmed order's whole story", async () => {
	assert.ok(confirmedOrder, "the Visa test placed no order");
	const page = await open(admin, `/admin/orders/${confirmedOrder}`);
	for (const step of ["reserve", "charge", "commit"]) await see(page, new RegExp(`^${step}$`));
	for (const type of ["order.created", "stock.reserved", "payment.captured", "order.confirmed"]) await see(page, type);
	await see(page, `Your order ${confirmedOrder.slice(-8).toUpperCase()} is confirmed`);
	await see(page, /^[0-9a-f]{32}$/); // the trace id
	await accessible(page);
	await page.screenshot({ path: `${shots}/readme-order-story.png`, fullPage: true });
});

test("the shop reads at phone width without sideways scrolling", async () => {
	// Closed with the browser, after afterEach has taken its screenshot.
	const phone = await browser.newContext({ baseURL: gateway, viewport: { width: 375, height: 740 }, isMobile: true });
	const page = await phone.newPage();
	lastPage = page;
	for (const path of ["/", "/?q=" + encodeURIComponent(lamp), "/cart", "/login", "/signup"]) {
		await page.goto(path);
		const [content, viewport] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
		assert.ok(content <= viewport, `${path} is ${content}px wide on a ${viewport}px screen`);
		await accessible(page);
	}
	await page.goto("/?q=" + encodeURIComponent(lamp));
	await page.getByRole("link", { name: lamp }).click();
	await see(page, "Add to cart");
	const [content, viewport] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
	assert.ok(content <= viewport, `the product page is ${content}px wide on a ${viewport}px screen`);
	await page.screenshot({ path: `${shots}/readme-phone-product.png`, fullPage: true });
});
