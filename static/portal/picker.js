// Object pickers (approvals/kinds/picker.py): the text input asks the
// inventory search through htmx as one types; this file makes the answer a
// keyboard-usable listbox (arrows, Enter, Escape; or a click). Choosing an
// option writes its inventory path into the input, which the portal
// resolves to exactly that object when the ticket is filed.
(function () {
  "use strict";

  function parts(input) {
    var list = document.getElementById(input.getAttribute("aria-controls"));
    var picked = document.getElementById(input.id + "-picked");
    return { list: list, picked: picked };
  }

  function options(list) {
    return Array.prototype.slice.call(list.querySelectorAll('[role="option"]'));
  }

  function open(input, list) {
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
  }

  function close(input, list) {
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  function activate(input, list, option) {
    options(list).forEach(function (o) {
      o.setAttribute("aria-selected", o === option ? "true" : "false");
      o.classList.toggle("active", o === option);
    });
    if (option) {
      input.setAttribute("aria-activedescendant", option.id);
      option.scrollIntoView({ block: "nearest" });
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  }

  function choose(input, option) {
    var p = parts(input);
    input.value = option.getAttribute("data-value");
    if (p.picked) {
      p.picked.textContent = "Chosen: " + option.textContent.replace(/\s+/g, " ").trim();
    }
    close(input, p.list);
  }

  document.addEventListener("htmx:afterSwap", function (event) {
    var list = event.detail.target;
    if (!list || list.getAttribute("role") !== "listbox") return;
    var input = document.querySelector('[aria-controls="' + list.id + '"]');
    if (!input || document.activeElement !== input) return;
    open(input, list);
    activate(input, list, null);
  });

  document.addEventListener("keydown", function (event) {
    var input = event.target;
    if (!input.matches || !input.matches("[data-picker] input[role=combobox]")) return;
    var list = parts(input).list;
    var all = options(list);
    var current = all.indexOf(document.getElementById(input.getAttribute("aria-activedescendant")));
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      if (!all.length) return;
      event.preventDefault();
      open(input, list);
      var step = event.key === "ArrowDown" ? 1 : -1;
      var next = current < 0 ? (step > 0 ? 0 : all.length - 1) : (current + step + all.length) % all.length;
      activate(input, list, all[next]);
    } else if (event.key === "Enter" && !list.hidden && current >= 0) {
      event.preventDefault(); // choose, do not file the form yet
      choose(input, all[current]);
    } else if (event.key === "Escape" && !list.hidden) {
      event.preventDefault();
      close(input, list);
    }
  });

  document.addEventListener("mousedown", function (event) {
    var option = event.target.closest && event.target.closest("[data-picker] [role=option]");
    if (!option) return;
    event.preventDefault(); // keep the focus in the input
    var input = document.querySelector('[aria-controls="' + option.parentNode.id + '"]');
    if (input) choose(input, option);
  });

  document.addEventListener("focusout", function (event) {
    var input = event.target;
    if (!input.matches || !input.matches("[data-picker] input[role=combobox]")) return;
    close(input, parts(input).list);
  });
})();
