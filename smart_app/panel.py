"""panel blueprint (placeholder until its helper fills it in)."""

from flask import Blueprint

bp = Blueprint("panel", __name__)
