"""A minimal AMQP 1.0 broker (python-qpid-proton) standing in for Azure Service Bus in tests.

Microsoft's Service Bus emulator needs Docker; this broker answers what
``azure-servicebus`` uses: CBS ``put-token``, queue sends (batches included),
peek-lock and receive-and-delete receives, complete / abandon / dead-letter, and a
few ``$management`` operations. Run it with ``python -m tests.servicebus_broker
--port 0 --port-file F``, or use ``BrokerProcess`` / the ``servicebus_broker``
fixture (``tests.servicebus_broker.fixture``).
"""

from tests.servicebus_broker.process import BrokerProcess, connection_string

__all__ = ["BrokerProcess", "connection_string"]
