# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prefect 1 GraphQL (Prefect Server 1, Prefect Cloud 1): tenants and projects.

Private to the collection. Every value travels in GraphQL variables, never spliced into a query.
Input and payload types are those of PrefectHQ/server ``graphql/schema/projects.graphql``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.qhub.prefect.plugins.module_utils._prefect.http import (
    PrefectApiError, error_detail, public_url,
)

AUTH_CODES = ("UNAUTHENTICATED", "UNAUTHORIZED", "FORBIDDEN")

Q_AUTH_INFO = "query AuthInfo { auth_info { tenant_id } }"
Q_TENANTS = "query Tenants { tenant { id } }"
Q_PROJECT = ("query Project($name: String!) "
             "{ project(where: {name: {_eq: $name}}) { id name description } }")
Q_PROJECT_IN_TENANT = ("query ProjectInTenant($name: String!, $tenant_id: uuid!) "
                       "{ project(where: {name: {_eq: $name}, tenant_id: {_eq: $tenant_id}}) { id name description } }")
M_CREATE = ("mutation CreateProject($input: create_project_input!) "
            "{ create_project(input: $input) { id } }")
M_DESCRIBE = ("mutation SetProjectDescription($input: set_project_description_input!) "
              "{ set_project_description(input: $input) { id } }")
M_DELETE = ("mutation DeleteProject($input: delete_project_input!) "
            "{ delete_project(input: $input) { success } }")


class GraphQLError(PrefectApiError):
    """The API answered with GraphQL ``errors``; ``messages`` lists them."""

    def __init__(self, message, messages):
        super().__init__(message, status=200)
        self.messages = messages


class Prefect1Client:
    def __init__(self, http, tenant_id=None):
        self.http = http
        self.tenant_id = tenant_id
        if tenant_id:
            http.headers["X-PREFECT-TENANT-ID"] = tenant_id

    def graphql(self, operation, query, variables=None):
        """``data`` of a GraphQL answer; errors become a GraphQLError naming the operation."""
        # Apollo answers a query that fails validation (an unknown field, a wrong type) with HTTP 400 and errors.
        status, body = self.http.request("POST", "", {"query": query, "variables": variables or {}}, allow=(400,))
        url = public_url(self.http.base_url)
        if status == 400 and not (isinstance(body, dict) and body.get("errors")):
            raise self.http.error("the Prefect API rejected %s at %s (HTTP 400 Bad Request)%s" % (
                operation, url, ": " + error_detail(body) if body else ""), status=400)
        if not isinstance(body, dict) or not ("data" in body or "errors" in body):
            raise self.http.not_this_api(self.http.base_url, "a GraphQL query with %s" % (
                "an empty body" if body is None else "JSON that is not a GraphQL response"))
        errors = body.get("errors") or []
        if errors:
            messages = [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors]
            codes = [((e.get("extensions") or {}).get("code") or "") if isinstance(e, dict) else "" for e in errors]
            refused = [c for c in codes if c.upper() in AUTH_CODES]
            if refused or any("Unauthenticated" in m or "Malformed Authorization header" in m for m in messages):
                raise self.http.error("the Prefect API refused the API key (%s) at %s" % (
                    refused[0] if refused else "UNAUTHENTICATED", url))
            raise GraphQLError(self.http.redact("the Prefect API at %s answered %s with errors: %s" % (
                url, operation, "; ".join(messages))), messages)
        return body.get("data") or {}

    # -- tenant -------------------------------------------------------------------------------
    def lookup_tenant(self):
        """The tenant id: Cloud's ``auth_info`` (the API key's tenant), else Server's first ``tenant``."""
        if self.tenant_id:
            return self.tenant_id
        tenant_id = None
        try:
            tenant_id = (self.graphql("auth_info", Q_AUTH_INFO).get("auth_info") or {}).get("tenant_id")
        except GraphQLError:
            tenant_id = None  # Prefect Server 1 has no auth_info
        if not tenant_id:
            tenants = self.graphql("tenant", Q_TENANTS).get("tenant") or []
            if not tenants:
                raise PrefectApiError("the Prefect Server at %s has no tenant yet: create one with "
                                      "'prefect server create-tenant --name default' (or set tenant_id)"
                                      % public_url(self.http.base_url))
            tenant_id = tenants[0]["id"]
        self.tenant_id = tenant_id
        self.http.headers["X-PREFECT-TENANT-ID"] = tenant_id
        return tenant_id

    # -- projects -----------------------------------------------------------------------------
    def find_project(self, name):
        """The project named ``name`` ({id, name, description}) or None."""
        if self.tenant_id:
            data = self.graphql("project", Q_PROJECT_IN_TENANT, {"name": name, "tenant_id": self.tenant_id})
        else:
            data = self.graphql("project", Q_PROJECT, {"name": name})
        found = data.get("project")
        if not isinstance(found, list):
            raise self.http.not_this_api(self.http.base_url, "the project query without a list of projects")
        if len(found) > 1:
            raise PrefectApiError("%d projects are named %r (in different tenants): set tenant_id to choose one"
                                  % (len(found), name))
        return dict(found[0]) if found else None

    def create_project(self, name, description=None):
        """Create the project; when another run created it first, return that one ({id, name, description})."""
        tenant_id = self.lookup_tenant()
        project_input = {"tenant_id": tenant_id, "name": name}
        if description is not None:
            project_input["description"] = description
        try:
            created = self.graphql("create_project", M_CREATE, {"input": project_input}).get("create_project")
        except GraphQLError as exc:
            if any("Uniqueness violation" in m for m in exc.messages):
                existing = self.find_project(name)
                if existing:
                    return existing
            raise
        if not created or not created.get("id"):
            raise PrefectApiError("the Prefect API at %s created no project %r and gave no reason"
                                  % (public_url(self.http.base_url), name))
        return {"id": created["id"], "name": name, "description": description}

    def set_project_description(self, project_id, description):
        self.graphql("set_project_description", M_DESCRIBE,
                     {"input": {"project_id": project_id, "description": description}})

    def delete_project(self, project_id):
        result = self.graphql("delete_project", M_DELETE, {"input": {"project_id": project_id}})
        return bool((result.get("delete_project") or {}).get("success"))


def ensure_project(client, name, description=None, state="present", check_mode=False):
    """Converge one project by name. Returns a dict: changed, differences, project ({} when absent), before, after."""
    current = client.find_project(name)
    result = {"changed": False, "differences": [], "project": {}, "before": _view(current), "after": {}}
    if state == "absent":
        if current is None:
            return result
        if not check_mode and not client.delete_project(current["id"]):
            existing = client.find_project(name)
            if existing is not None:
                raise PrefectApiError("the Prefect API did not delete the project %r (id %s)" % (name, current["id"]))
        result.update(changed=True, differences=["project"])
        return result

    if current is None:
        if check_mode:
            project = {"id": None, "name": name, "description": description}
        else:
            project = client.create_project(name, description)
            if description is not None and project.get("description") != description:
                client.set_project_description(project["id"], description)
                project["description"] = description
        result.update(changed=True, differences=["project"], project=project, after=_view(project))
        return result

    project = dict(current)
    if description is not None and current.get("description") != description:
        result["differences"].append("description")
        if not check_mode:
            client.set_project_description(current["id"], description)
        project["description"] = description
    result.update(changed=bool(result["differences"]), project=project, after=_view(project))
    return result


def _view(project):
    if not project:
        return {}
    return {"name": project.get("name"), "description": project.get("description")}
