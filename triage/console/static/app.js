// caud console: live board (SSE), lease countdown, live triage preview, one-submit forms, reroute
// fields. No inline script anywhere: the page's Content-Security-Policy forbids it.
(function () {
  "use strict";

  function csrf() {
    var el = document.querySelector('input[name="csrf"]');
    return el ? el.value : "";
  }

  // Forms marked data-una-vez submit once: a double click does not send twice.
  document.querySelectorAll("form[data-una-vez]").forEach(function (f) {
    f.addEventListener("submit", function (ev) {
      if (f.dataset.enviado === "1") { ev.preventDefault(); return; }
      f.dataset.enviado = "1";
      f.querySelectorAll('button[type="submit"]').forEach(function (b) {
        b.setAttribute("aria-disabled", "true");
        b.classList.add("enviando");
      });
    });
  });

  // Queue board over Server-Sent Events.
  var tabla = document.getElementById("colas");
  if (tabla && window.EventSource) {
    var estado = document.getElementById("en-vivo");
    var es = new EventSource("/tablero/eventos");
    es.addEventListener("open", function () {
      estado.textContent = "En vivo.";
      estado.dataset.estado = "en-vivo";
    });
    es.addEventListener("error", function () {
      estado.textContent = "Reconectando…";
      estado.dataset.estado = "reconectando";
    });
    es.addEventListener("colas", function (ev) {
      var filas;
      try { filas = JSON.parse(ev.data); } catch (e) { return; }
      filas.forEach(function (q) {
        var tr = tabla.querySelector('tr[data-cola="' + q.name + '"]');
        if (!tr) { return; }
        tr.querySelector('[data-campo="pending"]').textContent = String(q.pending);
        tr.querySelector('[data-campo="in_progress"]').textContent = String(q.in_progress);
        tr.querySelector('[data-campo="oldest"]').textContent = q.oldest;
      });
      estado.textContent = "En vivo.";
      estado.dataset.estado = "en-vivo";
      tabla.dataset.actualizado = String(Date.now());
    });
  }

  // Lease countdown.
  var plazo = document.getElementById("plazo");
  if (plazo) {
    var vence = Date.parse(plazo.dataset.vence);
    var restante = document.getElementById("restante");
    var tick = function () {
      var s = Math.floor((vence - Date.now()) / 1000);
      if (s <= 0) {
        plazo.classList.add("oculto");
        document.getElementById("plazo-vencido").classList.remove("oculto");
        return;
      }
      var m = Math.floor(s / 60);
      restante.textContent = (m > 0 ? m + " min " : "") + (s % 60) + " s";
      if (s < 120) { plazo.classList.add("urgente"); }
      setTimeout(tick, 1000);
    };
    tick();
  }

  // Tests checklist counter.
  var cuenta = document.getElementById("pruebas-cuenta");
  if (cuenta) {
    var cajas = document.querySelectorAll('input[name="prueba"]');
    var contar = function () {
      var n = 0;
      cajas.forEach(function (c) { if (c.checked) { n++; } });
      cuenta.textContent = n + " de " + cuenta.dataset.total + " pruebas realizadas";
    };
    cajas.forEach(function (c) { c.addEventListener("change", contar); });
    contar();
  }

  // Reroute: show only the fields that apply to the chosen queue.
  var destino = document.getElementById("destino");
  if (destino) {
    var mostrar = function () {
      document.querySelectorAll("[data-para]").forEach(function (d) {
        var para = d.dataset.para.split(" ");
        d.classList.toggle("oculto", para.indexOf(destino.value) < 0);
      });
    };
    destino.addEventListener("change", mostrar);
    mostrar();
  }

  // Live triage preview while the agent types the description.
  var form = document.querySelector("form[data-vista-previa]");
  if (form) {
    var vista = document.getElementById("vista");
    var timer = null, pedido = 0, ultimo = "";
    var pedir = function () {
      var datos = new URLSearchParams(new FormData(form));
      datos.delete("clave");
      var clave = datos.toString();
      if (clave === ultimo) { return; }
      ultimo = clave;
      var n = ++pedido;
      fetch(form.dataset.vistaPrevia, {
        method: "POST",
        headers: { "X-CSRF-Token": csrf(), "Content-Type": "application/x-www-form-urlencoded" },
        body: clave,
        credentials: "same-origin"
      }).then(function (r) {
        if (!r.ok) { throw new Error(String(r.status)); }
        return r.text();
      }).then(function (html) {
        if (n !== pedido) { return; }
        vista.innerHTML = html;
        vista.dataset.version = String(n);
      }).catch(function () {
        if (n === pedido) { vista.dataset.error = "1"; }
      });
    };
    form.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(pedir, 250);
    });
  }
})();
