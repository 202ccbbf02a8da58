// Passkeys (WebAuthn): registering one on the passkeys page, and signing an
// approval on a ticket page. No inline scripts: the content security policy
// forbids them, so the pages carry data- attributes and this file does the rest.
(function () {
  "use strict";
  if (window.twokeyPasskeys) {
    window.twokeyPasskeys.mark();
    return;
  }

  function toBase64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let text = "";
    for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function fromBase64url(text) {
    const plain = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4));
    const bytes = new Uint8Array(plain.length);
    for (let i = 0; i < plain.length; i++) bytes[i] = plain.charCodeAt(i);
    return bytes.buffer;
  }

  function supported() {
    return Boolean(window.PublicKeyCredential && navigator.credentials && navigator.credentials.get);
  }

  function csrfToken(form) {
    const field = form.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  function say(form, text) {
    const box = form.querySelector("[data-passkey-error]");
    if (box) {
      box.textContent = text;
      box.hidden = false;
    }
  }

  async function postJSON(url, form, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(form) },
      body: JSON.stringify(body || {}),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.detail || data.error || `The portal answered ${response.status}.`);
    return data;
  }

  function credentialJSON(credential) {
    const response = credential.response;
    const json = { id: credential.id, rawId: toBase64url(credential.rawId), type: credential.type, response: {} };
    for (const name of ["clientDataJSON", "authenticatorData", "signature", "userHandle", "attestationObject"]) {
      if (response[name]) json.response[name] = toBase64url(response[name]);
    }
    if (response.getTransports) json.response.transports = response.getTransports();
    return json;
  }

  async function approve(button) {
    const form = button.closest("form");
    button.disabled = true;
    try {
      const options = await postJSON(button.dataset.challengeUrl, form);
      const publicKey = options.publicKey;
      publicKey.challenge = fromBase64url(publicKey.challenge);
      publicKey.allowCredentials = publicKey.allowCredentials.map((c) => ({ type: c.type, id: fromBase64url(c.id) }));
      const credential = await navigator.credentials.get({ publicKey });
      form.querySelector("input[name=passkey]").value = JSON.stringify(credentialJSON(credential));
      form.submit();
    } catch (error) {
      say(form, `No approval was signed: ${error.message}`);
      button.disabled = false;
    }
  }

  async function register(button) {
    const form = button.closest("form");
    button.disabled = true;
    try {
      const publicKey = await postJSON(button.dataset.optionsUrl, form);
      publicKey.challenge = fromBase64url(publicKey.challenge);
      publicKey.user.id = fromBase64url(publicKey.user.id);
      publicKey.excludeCredentials = (publicKey.excludeCredentials || []).map((c) => ({
        type: c.type,
        id: fromBase64url(c.id),
      }));
      const credential = await navigator.credentials.create({ publicKey });
      const name = form.querySelector("input[name=name]");
      await postJSON(button.dataset.registerUrl, form, {
        credential: credentialJSON(credential),
        name: name ? name.value : "",
      });
      window.location.reload();
    } catch (error) {
      say(form, `No passkey was registered: ${error.message}`);
      button.disabled = false;
    }
  }

  function mark() {
    const ok = supported();
    document.querySelectorAll("[data-passkey-unsupported]").forEach((el) => {
      el.hidden = ok;
    });
    document.querySelectorAll("[data-passkey-approve], [data-passkey-register]").forEach((el) => {
      if (!ok) el.disabled = true;
    });
  }

  document.addEventListener("click", (event) => {
    const approveButton = event.target.closest("[data-passkey-approve]");
    if (approveButton) {
      event.preventDefault();
      approve(approveButton);
      return;
    }
    const registerButton = event.target.closest("[data-passkey-register]");
    if (registerButton) {
      event.preventDefault();
      register(registerButton);
    }
  });
  document.addEventListener("htmx:afterSettle", mark);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mark);
  else mark();
  window.twokeyPasskeys = { mark };
})();
