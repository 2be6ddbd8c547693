// Allure 3 configuration for the audit report (`python -m reports` runs `allure generate` with it).
// Plain data, no imports: Allure 3 is installed in tools/node_modules by scripts/bootstrap.sh.
// `python -m reports` passes the folders in AUDIT_* variables; the defaults are the repo's own.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

const env = process.env;
const results = resolve(env.AUDIT_RESULTS_DIR ?? "reports/allure-results");
const reports = dirname(results);

// The plugin writes Allure 2's categories.json into allure-results; Allure 3's Awesome report
// ignores that file and reads its categories from this config instead (first match wins).
const categoriesFile = join(results, "categories.json");
const categories = existsSync(categoriesFile) ? JSON.parse(readFileSync(categoriesFile, "utf8")) : [];

const history = env.AUDIT_HISTORY ?? "reports/history/history.jsonl"; // "" turns history off
// The requirement matrix (written by the audit next to allure-results) is shown in the report's
// "Global Attachments" tab.
const matrix = [join(reports, "requirements.html"), join(reports, "requirements.md")].filter(existsSync);

export default {
  name: env.AUDIT_REPORT_NAME ?? "Pynomaly deployment audit",
  output: resolve(env.AUDIT_REPORT_DIR ?? "reports/html"),
  // Trend and per-check history across runs: one JSON line per report, kept between runs
  // (CI restores reports/history from its cache before generating).
  ...(history ? { historyPath: resolve(history), historyLimit: Number(env.AUDIT_HISTORY_LIMIT ?? 60) } : {}),
  categories: { rules: categories },
  globalAttachments: matrix,
  plugins: {
    awesome: {
      options: {
        reportName: env.AUDIT_REPORT_NAME ?? "Pynomaly deployment audit",
        singleFile: env.AUDIT_SINGLE_FILE === "1",
        reportLanguage: "en",
        groupBy: ["feature", "story"],
      },
    },
    // Allure adds its agent plugin unless one is configured; the audit has no use for it.
    agent: { enabled: false },
  },
};
