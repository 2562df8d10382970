// Hash routes, one view at a time:
//
//   #/ (or nothing)          the board: pull requests and tasks
//   #/deliveries             the deliveries, newest first
//   #/deliveries/<guid>      one delivery
//   #/pulls/<owner>/<repo>/<n>  one PR's timeline
//   #/health                 the parts' health
//
// Any other fragment (#task-..., #pr-...) is a row of the board: the board is shown
// and the row scrolled to. A view is {show(params), hide()}; show() may return the
// element to focus (else the view's heading takes the focus, so a screen reader says
// where we are).

const views = new Map(); // name -> {section, view}
const nav = document.getElementById("views-nav");
const TITLES = {
  board: "Pull requests and tasks",
  deliveries: "Deliveries",
  delivery: "Delivery",
  timeline: "PR timeline",
  health: "Health",
};
let active = null;
let enabled = false;
let current = null; // the hash shown, and the one before it (where Escape goes back to)
let previous = null;

export function register(name, view) {
  views.set(name, { section: document.querySelector(`.view[data-view="${name}"]`), view });
}

export function parse(hash) {
  const path = hash.startsWith("#/") ? hash.slice(2).split("?")[0] : null;
  if (path === null) return { name: "board", anchor: hash.length > 1 ? hash.slice(1) : null };
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "deliveries" && parts.length === 1) return { name: "deliveries" };
  if (parts[0] === "deliveries" && parts.length === 2) return { name: "delivery", guid: parts[1] };
  if (parts[0] === "pulls" && parts.length === 4 && /^[0-9]+$/.test(parts[3])) {
    return { name: "timeline", repository: `${parts[1]}/${parts[2]}`, number: Number(parts[3]) };
  }
  if (parts[0] === "health" && parts.length === 1) return { name: "health" };
  return { name: "board" };
}

export function route(focus = true) {
  if (!enabled) return;
  const params = parse(location.hash);
  if (location.hash !== current) [previous, current] = [current, location.hash];
  const next = views.get(params.name);
  if (active && active !== next) {
    active.view.hide();
    active.section.hidden = true;
  }
  next.section.hidden = false;
  const target = next.view.show(params);
  active = next;
  const tab = params.name === "delivery" ? "deliveries" : params.name;
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.view === tab) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${TITLES[params.name]} · webhook-service`;
  if (params.anchor) {
    const row = document.getElementById(params.anchor);
    if (row) row.scrollIntoView({ block: "center" });
  } else if (focus) {
    (target || next.section.querySelector("h2")).focus({ preventScroll: false });
  }
}

// Routing runs only while signed in; stop() hides every view but the board.
export function enable(on) {
  enabled = on;
  nav.hidden = !on;
  if (on) {
    route(false);
    return;
  }
  for (const { section, view } of views.values()) {
    if (section.dataset.view !== "board") section.hidden = true;
    if (active && active.view === view) view.hide();
  }
  active = null;
}

window.addEventListener("hashchange", () => route(true));

// Escape closes a detail (a delivery, a timeline): back to the list it came from.
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || !enabled || event.defaultPrevented) return;
  const { name } = parse(location.hash);
  if (name === "delivery") location.hash = "#/deliveries";
  else if (name === "timeline") {
    const back = previous && parse(previous).name === "delivery" ? previous : "#/";
    location.hash = back;
  }
});
