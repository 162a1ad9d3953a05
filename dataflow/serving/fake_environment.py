"""A deterministic responder for the environment pipeline on the example shop (test kit, product
code): ``shop_responder(messages, json_schema)`` answers ``TaskBlueprintGenerator``'s,
``EnvironmentConversationGenerator``'s user agent's and assistant agent's prompts, like
``fake_responders.button_responder`` does for the multi-turn pipeline.

- blueprints: it reads the shop's data from the prompt (the ``Data:`` block) and the focus line,
  and proposes one of five tasks (cancel an order that has not shipped; cancel a delivered order,
  which the shop refuses; order over the balance, refused; change an order's address; check an
  order's status) on matching records;
- the user agent opens with the intent and is done after the assistant's first answer;
- the assistant reads the first user message (order, customer and product IDs, the email, what
  is asked), calls the tools in order, one per reply, then answers with the results' values.

Use it by dotted path: ``dataflow.serving.fake_environment:shop_responder``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .fake_responders import _inner_schema

Messages = list[dict]
TASKS = ("cancel", "delivered", "balance", "address", "status")


def shop_responder(messages: Messages, json_schema: dict | None) -> dict:
    """A valid reply for the environment pipeline's prompts on the example shop."""
    title = _inner_schema(json_schema).get("title", "")
    system = next((m.get("content") or "" for m in messages if m.get("role") == "system"), "")
    user = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
    if title == "BlueprintReply":
        return shop_blueprint(user)
    if title == "UserReply":
        return _user(system, user)
    if title == "AssistantTurnReply":
        return _assistant(user)
    raise ValueError(f"shop_responder: no reply for schema {title or '(untitled)'}")


def shop_blueprint(prompt: str) -> dict:
    """A blueprint for the focus named in ``prompt`` (one of ``TASKS`` by keyword; default
    ``cancel``) on the records of the prompt's ``Data:`` block."""
    data = json.loads(re.search(r"Data:\n(\{.*\})", prompt, re.DOTALL).group(1))
    focus = (re.search(r"The task is about: (.*)", prompt) or [None, ""])[1].lower()
    task = next((t for t in TASKS[1:] if t in focus), "cancel")
    customers, orders, products = data["customers"], data["orders"], data["products"]

    def order_in(status: str) -> tuple[str, dict, dict]:
        order_id, order = next((k, o) for k, o in orders.items() if o["status"] == status)
        return order_id, order, customers[order["customer_id"]]

    if task == "cancel":
        order_id, order, customer = order_in("processing")
        return {"intent": f"I am {customer['name']} ({customer['email']}) and I want to cancel my order {order_id}.",
                "calls": [{"name": "find_customer", "arguments": {"email": customer["email"]}, "expect": "success"},
                          {"name": "cancel_order", "arguments": {"order_id": order_id}, "expect": "success"}],
                "facts": ["cancelled", str(order["total"])]}
    if task == "delivered":
        order_id, order, customer = order_in("delivered")
        return {"intent": f"I am {customer['name']} and I want to cancel my order {order_id}.",
                "calls": [{"name": "cancel_order", "arguments": {"order_id": order_id}, "expect": "error"}],
                "facts": ["delivered"]}
    if task == "balance":
        customer_id, customer = min(customers.items(), key=lambda kv: kv[1]["balance"])
        product_id, product = max(products.items(), key=lambda kv: kv[1]["price"])
        return {"intent": f"I am {customer['name']}, customer {customer_id}, and I want to buy one "
                          f"{product['name']} (product {product_id}).",
                "calls": [{"name": "place_order", "arguments": {"customer_id": customer_id, "product_id": product_id,
                                                                "quantity": 1}, "expect": "error"}],
                "facts": [str(customer["balance"])]}
    if task == "address":
        order_id, order, customer = order_in("processing")
        return {"intent": f"I am {customer['name']}. Please send my order {order_id} to 5 Mill Road, Cambridge "
                          "instead.",
                "calls": [{"name": "change_shipping_address",
                           "arguments": {"order_id": order_id, "address": "5 Mill Road, Cambridge"},
                           "expect": "success"}],
                "facts": ["5 Mill Road, Cambridge"]}
    order_id, order, customer = order_in("shipped")
    return {"intent": f"I am {customer['name']}. Where is my order {order_id}? I would like to know its status.",
            "calls": [{"name": "get_order", "arguments": {"order_id": order_id}, "expect": "success"}],
            "facts": ["shipped"]}


def _user(system: str, user: str) -> dict:
    intent = system.split("What you want:\n", 1)[-1].split("\n", 1)[0].strip()
    if "Start the conversation." in user:
        return {"message": intent, "done": False}
    return {"message": "Thank you, that is all.", "done": True}


def _assistant(prompt: str) -> dict:
    transcript = prompt.split("Conversation so far:\n", 1)[-1]
    first = next((line[len("USER: "):] for line in transcript.splitlines() if line.startswith("USER: ")), "")
    made = len(re.findall(r"^ASSISTANT CALLS: ", transcript, re.MULTILINE))
    plan = _plan(first)
    if made < len(plan):
        return {"tool_calls": [plan[made]], "content": ""}
    results = re.findall(r"^TOOL RESULT of \w+: (.*)$", transcript, re.MULTILINE)
    return {"tool_calls": [], "content": _answer(results[-1] if results else "")}


def _plan(request: str) -> list[dict]:
    """The calls the request needs, read from its IDs and words."""
    order = re.search(r"\bO\d{4}\b", request)
    email = re.search(r"[\w.]+@[\w.]+\w", request)
    customer, product = re.search(r"\bC\d{3}\b", request), re.search(r"\bP\d{2}\b", request)
    address = re.search(r"send my order \w+ to (.+?) instead", request)
    if "buy" in request and customer and product:
        return [{"name": "place_order", "arguments": {"customer_id": customer.group(0), "product_id": product.group(0),
                                                      "quantity": 1}}]
    if address and order:
        return [{"name": "change_shipping_address", "arguments": {"order_id": order.group(0),
                                                                  "address": address.group(1)}}]
    if "cancel" in request and order:
        found = [{"name": "find_customer", "arguments": {"email": email.group(0)}}] if email else []
        return found + [{"name": "cancel_order", "arguments": {"order_id": order.group(0)}}]
    if order:
        return [{"name": "get_order", "arguments": {"order_id": order.group(0)}}]
    return []


def _answer(result_text: str) -> str:
    try:
        result: Any = json.loads(result_text)
    except ValueError:
        return "I could not find what you asked for."
    if isinstance(result, dict) and "error" in result:
        return f"Sorry, the shop refused: {result['error'].split(': ', 1)[-1]}."
    if isinstance(result, dict):
        shown = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result.items() if not isinstance(v, (dict, list)))
        return f"Done. Your order now shows: {shown}."
    return f"Here is what I found: {result_text[:200]}."
