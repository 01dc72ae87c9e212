"""CDS Hooks blueprint (placeholder until its helper fills it in)."""

from flask import Blueprint

bp = Blueprint("cds_hooks", __name__)
