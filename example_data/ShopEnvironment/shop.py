"""A small coffee-equipment shop: customers with a store-credit balance, products with stock,
and orders. The environment of ``api_pipelines/environment_synthesis.py``.

``Shop(data)`` takes the content of ``shop_data.json``; its public methods are the tools (their
type hints and docstrings become the tool specs). Orders are paid from the customer's balance.
Some requests must be refused, and are: cancelling or re-addressing an order that has shipped or
been delivered, ordering more than the stock, or paying more than the balance. A refusal raises
``ValueError``; the conversation sees it as the tool's error.
"""

from __future__ import annotations

from typing import Annotated


class Shop:
    """Customers, products and orders of an online coffee-equipment shop."""

    def __init__(self, data: dict):
        self.customers: dict = data["customers"]
        self.products: dict = data["products"]
        self.orders: dict = data["orders"]

    # -- reading ----------------------------------------------------------------------------------
    def find_customer(self, email: str) -> dict:
        """Find a customer by email address.

        Args:
            email: The customer's email address.
        """
        for customer_id, customer in self.customers.items():
            if customer["email"].lower() == email.strip().lower():
                return {"customer_id": customer_id, "name": customer["name"]}
        raise ValueError(f"no customer has the email {email}")

    def get_customer(self, customer_id: str) -> dict:
        """Get a customer's name, email, store-credit balance and shipping address.

        Args:
            customer_id: The customer's ID, such as C001.
        """
        return {"customer_id": customer_id, **self._customer(customer_id)}

    def list_orders(self, customer_id: str) -> list:
        """List a customer's orders with their status and total.

        Args:
            customer_id: The customer's ID, such as C001.
        """
        self._customer(customer_id)
        return [{"order_id": order_id, "product": self.products[o["product_id"]]["name"], "status": o["status"],
                 "total": o["total"]}
                for order_id, o in self.orders.items() if o["customer_id"] == customer_id]

    def get_order(self, order_id: str) -> dict:
        """Get one order: its product, quantity, total, status and shipping address.

        Args:
            order_id: The order's ID, such as O1001.
        """
        order = self._order(order_id)
        return {"order_id": order_id, "product": self.products[order["product_id"]]["name"], **order}

    def search_products(self, query: str) -> list:
        """Search products whose name contains the query words.

        Args:
            query: Words of the product name, such as "coffee scale".
        """
        terms = query.lower().split()
        return [{"product_id": pid, "name": p["name"], "price": p["price"], "in_stock": p["stock"] > 0}
                for pid, p in self.products.items() if all(t in p["name"].lower() for t in terms)]

    def get_product(self, product_id: str) -> dict:
        """Get a product's name, price and how many are in stock.

        Args:
            product_id: The product's ID, such as P01.
        """
        if product_id not in self.products:
            raise ValueError(f"no product has the ID {product_id}")
        return {"product_id": product_id, **self.products[product_id]}

    # -- changing ---------------------------------------------------------------------------------
    def place_order(self, customer_id: str, product_id: str,
                    quantity: Annotated[int, {"minimum": 1, "maximum": 10}] = 1) -> dict:
        """Order a product for a customer, paid from the customer's store-credit balance and
        shipped to the customer's address. Refused when the stock or the balance is too small.

        Args:
            customer_id: The customer's ID, such as C001.
            product_id: The product's ID, such as P01.
            quantity: How many to order.
        """
        customer = self._customer(customer_id)
        product = self.get_product(product_id)
        if product["stock"] < quantity:
            raise ValueError(f"only {product['stock']} of {product['name']} in stock")
        total = round(product["price"] * quantity, 2)
        if total > customer["balance"]:
            raise ValueError(f"the total {total:.2f} is more than the balance {customer['balance']:.2f}")
        order_id = f"O{1001 + len(self.orders)}"
        self.products[product_id]["stock"] -= quantity
        customer["balance"] = round(customer["balance"] - total, 2)
        self.orders[order_id] = {"customer_id": customer_id, "product_id": product_id, "quantity": quantity,
                                 "total": total, "status": "processing", "address": customer["address"]}
        return {"order_id": order_id, "total": total, "balance": customer["balance"], "status": "processing"}

    def cancel_order(self, order_id: str) -> dict:
        """Cancel an order that has not shipped yet; its total is refunded to the balance.
        Refused for orders that have shipped, been delivered or are already cancelled.

        Args:
            order_id: The order's ID, such as O1001.
        """
        order = self._order(order_id)
        if order["status"] != "processing":
            raise ValueError(f"order {order_id} is {order['status']} and cannot be cancelled")
        order["status"] = "cancelled"
        customer = self.customers[order["customer_id"]]
        customer["balance"] = round(customer["balance"] + order["total"], 2)
        self.products[order["product_id"]]["stock"] += order["quantity"]
        return {"order_id": order_id, "status": "cancelled", "refunded": order["total"],
                "balance": customer["balance"]}

    def change_shipping_address(self, order_id: str, address: str) -> dict:
        """Change where an order that has not shipped yet will be sent.

        Args:
            order_id: The order's ID, such as O1001.
            address: The new street address and city.
        """
        order = self._order(order_id)
        if order["status"] != "processing":
            raise ValueError(f"order {order_id} is {order['status']}; its address can no longer change")
        previous, order["address"] = order["address"], address.strip()
        return {"order_id": order_id, "status": order["status"], "previous_address": previous,
                "address": order["address"]}

    def add_store_credit(self, customer_id: str, amount: Annotated[float, {"minimum": 1, "maximum": 500}]) -> dict:
        """Add store credit to a customer's balance.

        Args:
            customer_id: The customer's ID, such as C001.
            amount: The amount to add, in dollars.
        """
        customer = self._customer(customer_id)
        customer["balance"] = round(customer["balance"] + amount, 2)
        return {"customer_id": customer_id, "balance": customer["balance"]}

    # -- helpers (not tools) ----------------------------------------------------------------------
    def _customer(self, customer_id: str) -> dict:
        if customer_id not in self.customers:
            raise ValueError(f"no customer has the ID {customer_id}")
        return self.customers[customer_id]

    def _order(self, order_id: str) -> dict:
        if order_id not in self.orders:
            raise ValueError(f"no order has the ID {order_id}")
        return self.orders[order_id]
