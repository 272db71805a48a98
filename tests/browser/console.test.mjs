// The console's pure functions under Node's own test runner (no browser): run by tests/unit/test_console_js.py.
import assert from "node:assert/strict";
import { test } from "node:test";

import { dense } from "../../serve_apps/console/static/js/chart.js";
import { hashOf, highlightParts, parseHash } from "../../serve_apps/console/static/js/dom.js";
import { safeUrl } from "../../serve_apps/console/static/js/richtext.js";
import { slugPreview } from "../../serve_apps/console/static/js/views/editor.js";

test("a series is drawn over time: buckets without documents become zeros", () => {
  const day = 86400e3;
  const series = [
    { bucket: "2018-03-10T00:00:00Z", count: 2, burst: false },
    { bucket: "2018-03-13T00:00:00Z", count: 9, burst: true },
  ];
  const filled = dense(series, day);
  assert.deepEqual(filled.map((p) => p.count), [2, 0, 0, 9]);
  assert.deepEqual(filled.map((p) => p.burst), [false, false, false, true]);
  assert.equal(filled[1].bucket, "2018-03-11T00:00:00.000Z");
  assert.equal(dense(series, 3600e3, 10), series); // a span over the limit is drawn as given
  assert.equal(dense(series.slice(0, 1), day).length, 1);
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

test("highlighting marks words that start with a query word, not letters inside other words", () => {
  const marked = (text, query) => highlightParts(text, query).filter(([, m]) => m).map(([part]) => part);
  assert.deepEqual(marked("Rally coverage from student journalists: March For Our Lives", "students march for our lives"), ["March", "For", "Our", "Lives"]);
  assert.deepEqual(marked("Marches across the course of a day", "march our"), ["March"]);
  assert.deepEqual(marked("افتتح المهرجان ومهرجان الربيع", "مهرجان"), ["مهرجان", "مهرجان"]); // after "ال" and "و"
  assert.equal(highlightParts("Students March", "students march").map(([p]) => p).join(""), "Students March"); // nothing lost
  assert.deepEqual(highlightParts("", "x y"), [["", false]]);
  assert.deepEqual(marked("a+b (c)", "(c) a+b"), []); // single letters are not query words
});

test("the visual editor keeps links and images on http, https, mailto or relative URLs only", () => {
  for (const ok of ["https://example.com/a", "HTTP://x", "mailto:desk@pulse.test", "/en/a-story", "story#part", ""]) assert.equal(safeUrl(ok), true, ok);
  for (const bad of ["javascript:alert(1)", " JavaScript:x", "data:text/html,<b>", "vbscript:x", "file:///etc/passwd", "java\nscript:x", "\u0001javascript:x"]) assert.equal(safeUrl(bad), false, bad);
});
