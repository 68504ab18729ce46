// Bazaar's storefront script. Everything works without it but one thing: an order
// page shows its status as it changes, read from the order's server-sent events.
"use strict";

// The words for a status and a cancel reason; the server's table is in model.go.
const statusWords = {
  pending: "Pending: checking stock and payment",
  reserved: "Pending: stock reserved, taking payment",
  paid: "Pending: paid, confirming",
  confirmed: "Confirmed",
  cancelling: "Being cancelled",
  cancelled: "Cancelled",
};
const reasonWords = {
  out_of_stock: "some items were out of stock",
  payment_declined: "the card was declined",
  insufficient_funds: "the card was declined for insufficient funds",
  customer_request: "you asked to cancel it; the money was refunded",
  timeout: "it could not be completed in time",
  price_changed: "a price changed while it was placed",
};

function describe(status, reason) {
  let words = statusWords[status] || status;
  if (reason) words += ": " + (reasonWords[reason] || reason);
  return words;
}

function followOrder(el) {
  const source = new EventSource(el.dataset.live);
  const cancel = document.getElementById("cancel-form");
  source.addEventListener("status", (e) => {
    const s = JSON.parse(e.data);
    el.textContent = describe(s.status, s.cancel_reason);
    el.dataset.status = s.status;
    el.className = "status status-" + s.status;
    if (cancel) cancel.hidden = s.status !== "confirmed";
    if (s.status === "cancelled") source.close(); // nothing follows a cancellation
  });
  // A confirmed order may still be cancelled later; the stream closes after a final
  // status, and EventSource would reconnect at once: stop then.
  source.addEventListener("error", () => {
    if (el.dataset.status === "confirmed" || el.dataset.status === "cancelled") source.close();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll("[data-live]")) followOrder(el);
  // Send focus to a form's error, so that a keyboard or screen reader user hears it.
  const error = document.getElementById("error");
  if (error) error.focus();
});
