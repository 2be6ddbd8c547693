"""CI/CD drifts (guide: CI/CD Pipeline): each edits the deployment repository's copy that
`provision up` writes to .state/deploy-repo (audit_deploy_repo), never the committed files in
provision/files/deploy-repo; heal copies the committed file back (content and mode)."""

from __future__ import annotations

import shutil
from collections.abc import Callable

from ..render import FILES
from . import Ctx, Drift

REPO = "deploy-repo"
WORKFLOW = ".github/workflows/deploy.yml"
SCRIPT = "scripts/deploy.sh"
DEPLOY_STEPS = "    if: github.ref == 'refs/heads/main'\n    steps:\n      - uses: "  # job deploy's first step


def edit_repo(relpath: str, *replacements: tuple[str, str], mode: int | None = None) -> tuple[Callable, Callable]:
    """apply/heal pair: text replacements (each must match) and/or a chmod on the copy."""

    def apply(ctx: Ctx) -> None:
        path = ctx.st.root / REPO / relpath
        text = path.read_text()
        for old, new in replacements:
            if old not in text:
                raise ValueError(f"{path}: {old!r} not found")
            text = text.replace(old, new)
        path.write_text(text)
        if mode is not None:
            path.chmod(mode)

    def heal(ctx: Ctx) -> None:
        shutil.copy2(FILES / REPO / relpath, ctx.st.root / REPO / relpath)

    return apply, heal


DRIFTS: tuple[Drift, ...] = (
    Drift("cicd-triggers-develop", ("CICD-WORKFLOW-TRIGGERS",),
          "deploy.yml runs on push to develop, without workflow_dispatch",
          *edit_repo(WORKFLOW, ("branches: [main]", "branches: [develop]"), ("  workflow_dispatch:\n", ""))),
    Drift("cicd-security-scan-removed", ("CICD-WORKFLOW-JOBS", "CICD-SECURITY-SCAN"),
          "deploy.yml: job security-scan renamed lint (deploy still names it in needs)",
          *edit_repo(WORKFLOW, ("  security-scan:\n", "  lint:\n"))),
    Drift("cicd-test-job-weakened", ("CICD-TEST-PYTHON", "CICD-TEST-COVERAGE"),
          "deploy.yml: job test on Python 3.9, pytest without coverage, no Codecov upload",
          *edit_repo(WORKFLOW, ("python-version: '3.11'", "python-version: '3.9'"),
                     (" --cov=src/pynomaly --cov-report=xml", ""),
                     ("      - name: Upload coverage\n        uses: codecov/codecov-action@v3\n", ""))),
    Drift("cicd-deploy-ungated", ("CICD-DEPLOY-GATED",),
          "deploy.yml: job deploy needs only test and runs on every branch",
          *edit_repo(WORKFLOW, ("needs: [test, security-scan]", "needs: [test]"),
                     ("    if: github.ref == 'refs/heads/main'\n", ""))),
    Drift("cicd-runner-self-hosted", ("CICD-WORKFLOW-RUNNER",),
          "deploy.yml: job security-scan runs on a self-hosted runner",
          *edit_repo(WORKFLOW, ("  security-scan:\n    runs-on: ubuntu-latest\n",
                                "  security-scan:\n    runs-on: self-hosted\n"))),
    Drift("cicd-checkout-v2", ("CICD-WORKFLOW-CHECKOUT",),
          "deploy.yml: job deploy checks out with actions/checkout@v2",
          *edit_repo(WORKFLOW, (f"{DEPLOY_STEPS}actions/checkout@v3\n", f"{DEPLOY_STEPS}actions/checkout@v2\n"))),
    Drift("cicd-deploy-no-pull", ("CICD-DEPLOY-REMOTE-UPDATE",),
          "deploy.yml: job deploy no longer pulls the new image on the server before docker-compose up",
          *edit_repo(WORKFLOW, ('          ssh ${{ secrets.PROD_SERVER }} "docker pull ${{ secrets.DOCKER_REGISTRY }}'
                                '/pynomaly:${{ github.sha }}"\n', ""))),
    Drift("cicd-deploy-latest-tag", ("CICD-DEPLOY-IMAGE-BY-SHA", "CICD-DEPLOY-REMOTE-UPDATE"),
          "deploy.yml: job deploy builds, tags, pushes and has the server pull pynomaly:latest, not the commit's image",
          *edit_repo(WORKFLOW, ("pynomaly:${{ github.sha }}", "pynomaly:latest"))),
    Drift("cicd-deploy-script-no-errexit", ("CICD-DEPLOY-SCRIPT",),
          "deploy.sh: `set -e` removed (a failed step no longer stops the deployment)",
          *edit_repo(SCRIPT, ("\nset -e\n", "\n"))),
    Drift("cicd-deploy-script-no-tag-guard", ("CICD-DEPLOY-SCRIPT-REQUIRES-TAG",),
          "deploy.sh: the usage guard is gone; without a tag it deploys pynomaly: (empty tag)",
          *edit_repo(SCRIPT, ('if [ -z "$IMAGE_TAG" ]; then\n    echo "Usage: $0 <image_tag>"\n    exit 1\nfi\n',
                              ""))),
    Drift("cicd-deploy-migrations-after-update", ("CICD-DEPLOY-MIGRATIONS-BEFORE-UPDATE",),
          "deploy.sh: the rolling update runs before the database migrations",
          *edit_repo(SCRIPT, ("# Rolling update\ndocker-compose -f /opt/pynomaly/docker-compose.prod.yml up -d "
                              "--no-deps pynomaly-app\n", ""),
                     ("# Run database migrations\n", "# Rolling update\ndocker-compose -f "
                      "/opt/pynomaly/docker-compose.prod.yml up -d --no-deps pynomaly-app\n\n"
                      "# Run database migrations\n"))),
    Drift("cicd-deploy-health-check-ignored", ("CICD-DEPLOY-HEALTH-CHECK-AFTER",),
          "deploy.sh: a failed health check no longer fails the deployment (|| true)",
          *edit_repo(SCRIPT, ("curl -f http://localhost/health || exit 1", "curl -f http://localhost/health || true"))),
)
