// The console's pure functions under Node's own test runner (no browser): run by tests/unit/test_console_js.py.
import assert from "node:assert/strict";
import { test } from "node:test";

import { bursts } from "../../serve_apps/console/static/js/chart.js";
import { hashOf, parseHash } from "../../serve_apps/console/static/js/dom.js";
import { slugPreview } from "../../serve_apps/console/static/js/views/editor.js";

test("a burst is a bucket far above the series' own mean, with at least 3 documents", () => {
  const series = [1, 2, 1, 2, 1, 14, 2, 1, 1, 2].map((count, i) => ({ bucket: `2018-03-${10 + i}`, count }));
  assert.deepEqual([...bursts(series)], [5]);
  assert.equal(bursts(series.slice(0, 2)).size, 0); // too short to have a baseline
  assert.equal(bursts([0, 0, 0, 2, 0, 0, 0, 0, 0, 0].map((count) => ({ count }))).size, 0); // 2 documents only
  assert.equal(bursts([3, 3, 3, 3].map((count) => ({ count }))).size, 0); // flat
});

test("routes round-trip through the hash", () => {
  const route = parseHash(hashOf("search", { q: "gun violence", mode: "keyword", lang: "", cursor: null }));
  assert.deepEqual(route.path, ["search"]);
  assert.equal(route.params.get("q"), "gun violence");
  assert.equal(route.params.get("mode"), "keyword");
  assert.equal(route.params.has("lang"), false);
  assert.deepEqual(parseHash("#/editor/items/12").path, ["editor", "items", "12"]);
  assert.deepEqual(parseHash("").path, []);
});

test("the slug preview keeps letters of any script and joins words with hyphens", () => {
  assert.equal(slugPreview("Students March, Again!"), "students-march-again");
  assert.equal(slugPreview("مهرجان الربيع في عمّان"), "مهرجان-الربيع-في-عمان"); // the shadda is dropped
  assert.equal(slugPreview("  "), "");
  assert.equal(slugPreview("x".repeat(150)).length, 100);
});
