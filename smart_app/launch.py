"""launch blueprint (placeholder until its helper fills it in)."""

from flask import Blueprint

bp = Blueprint("launch", __name__)
