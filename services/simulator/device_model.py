"""The simulated station's device model: what GetBaseReport / GetReport report, what
GetVariables / SetVariables read and change, and (through each variable's 1.6 key) what
1.6 GetConfiguration / ChangeConfiguration see.

A small, realistic inventory in the shape of OCPP 2.0.1 part 2 (components with optional
instance and EVSE/connector, variables with attributes and characteristics). One model
serves both versions so a test can change a value through one door and read it back through
another, and it outlives a reboot (the station object keeps it across reconnects).

Everything here is pure: no I/O, no clock. Payload dicts use the ocpp library's snake_case
keys (it turns them into camelCase on the wire, and back on the way in).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Iterator

__all__ = [
    "Attribute", "Variable", "DeviceModel", "default_model", "BASE_REPORTS",
    "report_data", "chunks", "CRITERIA",
]

BASE_REPORTS = ("ConfigurationInventory", "FullInventory", "SummaryInventory")
CRITERIA = ("Active", "Available", "Enabled", "Problem")


@dataclass
class Attribute:
    type: str = "Actual"             # Actual | Target | MinSet | MaxSet
    value: str = ""
    mutability: str = "ReadOnly"     # ReadOnly | WriteOnly | ReadWrite


@dataclass
class Variable:
    component: str
    name: str
    attributes: list[Attribute]
    data_type: str                   # string | decimal | integer | dateTime | boolean | OptionList | SequenceList | MemberList
    unit: str | None = None
    max_limit: Decimal | None = None
    min_limit: Decimal | None = None
    values_list: str | None = None
    component_instance: str | None = None
    evse: int | None = None
    connector: int | None = None
    instance: str | None = None      # the variable's instance
    key16: str | None = None         # its OCPP 1.6 configuration key, when it has one
    only16: bool = False             # a 1.6 key with no 2.0.1 variable (not reported in 2.0.1)

    def attribute(self, type_: str | None) -> Attribute | None:
        wanted = type_ or "Actual"
        return next((a for a in self.attributes if a.type == wanted), None)

    @property
    def writable(self) -> bool:
        return any(a.mutability != "ReadOnly" for a in self.attributes)

    def component_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.component}
        if self.component_instance is not None:
            out["instance"] = self.component_instance
        if self.evse is not None:
            evse: dict[str, Any] = {"id": self.evse}
            if self.connector is not None:
                evse["connector_id"] = self.connector
            out["evse"] = evse
        return out

    def variable_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.instance is not None:
            out["instance"] = self.instance
        return out

    def report_json(self) -> dict[str, Any]:
        """One NotifyReport `reportData` entry."""
        characteristics: dict[str, Any] = {"data_type": self.data_type, "supports_monitoring": False}
        if self.unit is not None:
            characteristics["unit"] = self.unit
        if self.min_limit is not None:
            characteristics["min_limit"] = float(self.min_limit)
        if self.max_limit is not None:
            characteristics["max_limit"] = float(self.max_limit)
        if self.values_list is not None:
            characteristics["values_list"] = self.values_list
        return {
            "component": self.component_json(),
            "variable": self.variable_json(),
            "variable_attribute": [
                {"type": a.type, "value": a.value, "mutability": a.mutability, "persistent": True, "constant": a.mutability == "ReadOnly"}
                for a in self.attributes
            ],
            "variable_characteristics": characteristics,
        }

    def check(self, value: str) -> bool:
        """Would `value` be a valid value of this variable (type, list, limits)?"""
        if len(value) > 2500:
            return False
        if self.data_type in ("integer", "decimal"):
            try:
                number = Decimal(value)
            except InvalidOperation:
                return False
            if not number.is_finite() or (self.data_type == "integer" and number != number.to_integral_value()):
                return False
            if self.min_limit is not None and number < self.min_limit:
                return False
            if self.max_limit is not None and number > self.max_limit:
                return False
            return True
        if self.data_type == "boolean":
            return value in ("true", "false")
        if self.data_type == "OptionList" and self.values_list is not None:
            return value in self.values_list.split(",")
        return True


def _matches_component(v: Variable, c: dict[str, Any]) -> bool:
    """A request's component (name, instance?, evse {id, connector_id?}?) names `v`'s component.
    An omitted instance or EVSE matches only the component without one."""
    if c.get("name") != v.component or c.get("instance") != v.component_instance:
        return False
    evse = c.get("evse")
    if evse is None:
        return v.evse is None
    return bool(evse.get("id") == v.evse and evse.get("connector_id") == v.connector)


def _matches_filter(v: Variable, cv: dict[str, Any]) -> bool:
    """A GetReport componentVariable: fields given must match, fields omitted match all."""
    c = cv.get("component") or {}
    if c.get("name") != v.component:
        return False
    if "instance" in c and c["instance"] != v.component_instance:
        return False
    evse = c.get("evse")
    if evse is not None:
        if evse.get("id") != v.evse:
            return False
        if "connector_id" in evse and evse["connector_id"] != v.connector:
            return False
    var = cv.get("variable")
    if var is not None:
        if var.get("name") != v.name:
            return False
        if "instance" in var and var["instance"] != v.instance:
            return False
    return True


def _component_key(v: Variable) -> tuple[str, str | None, int | None, int | None]:
    return (v.component, v.component_instance, v.evse, v.connector)


@dataclass
class DeviceModel:
    variables: list[Variable]
    network_profiles: dict[int, dict[str, Any]] = field(default_factory=dict)  # SetNetworkProfile slots

    # --- 2.0.1 -------------------------------------------------------------------------
    def reportable(self) -> list[Variable]:
        return [v for v in self.variables if not v.only16]

    def find(self, component: dict[str, Any], variable: dict[str, Any]) -> tuple[str, Variable | None]:
        """("ok", v) | ("UnknownComponent", None) | ("UnknownVariable", None)."""
        in_component = [v for v in self.reportable() if _matches_component(v, component)]
        if not in_component:
            return "UnknownComponent", None
        for v in in_component:
            if v.name == variable.get("name") and v.instance == variable.get("instance"):
                return "ok", v
        return "UnknownVariable", None

    def get_variable(self, item: dict[str, Any]) -> dict[str, Any]:
        """One GetVariables `getVariableResult` for one `getVariableData` item."""
        type_ = item.get("attribute_type")
        out: dict[str, Any] = {"component": item["component"], "variable": item["variable"]}
        if type_ is not None:
            out["attribute_type"] = type_
        found, v = self.find(item["component"], item["variable"])
        if v is None:
            return {**out, "attribute_status": found}
        attribute = v.attribute(type_)
        if attribute is None:
            return {**out, "attribute_status": "NotSupportedAttributeType"}
        if attribute.mutability == "WriteOnly":
            return {**out, "attribute_status": "Rejected"}
        return {**out, "attribute_status": "Accepted", "attribute_value": attribute.value}

    def set_variable(self, item: dict[str, Any]) -> dict[str, Any]:
        """One SetVariables `setVariableResult`; changes the model when Accepted."""
        type_ = item.get("attribute_type")
        out: dict[str, Any] = {"component": item["component"], "variable": item["variable"]}
        if type_ is not None:
            out["attribute_type"] = type_
        found, v = self.find(item["component"], item["variable"])
        if v is None:
            return {**out, "attribute_status": found}
        attribute = v.attribute(type_)
        if attribute is None:
            return {**out, "attribute_status": "NotSupportedAttributeType"}
        value = str(item.get("attribute_value", ""))
        if attribute.mutability == "ReadOnly" or not v.check(value):
            return {**out, "attribute_status": "Rejected"}
        attribute.value = value
        return {**out, "attribute_status": "Accepted"}

    def base_report(self, report_base: str) -> list[Variable] | None:
        """The variables of a GetBaseReport; None for an unknown report base.
        ConfigurationInventory: the variables with a writable attribute. FullInventory:
        everything. SummaryInventory: the availability of the station, its EVSEs and
        connectors (what an operator scans for problems)."""
        every = self.reportable()
        if report_base == "FullInventory":
            return every
        if report_base == "ConfigurationInventory":
            return [v for v in every if v.writable]
        if report_base == "SummaryInventory":
            return [v for v in every if v.component in ("ChargingStation", "EVSE", "Connector") and v.name == "AvailabilityState"]
        return None

    def report(self, criteria: Iterable[str] | None, component_variables: Iterable[dict[str, Any]] | None) -> list[Variable]:
        """The variables of a GetReport. A component meets a criterion (Active, Available,
        Enabled, Problem) when it has that variable with the value "true"; with both
        criteria and componentVariables a variable must pass both."""
        every = self.reportable()
        selected = every
        wanted = list(criteria or [])
        if wanted:
            meeting = {
                _component_key(v) for v in every
                if v.name in wanted and (a := v.attribute("Actual")) is not None and a.value == "true"
            }
            selected = [v for v in selected if _component_key(v) in meeting]
        filters = list(component_variables or [])
        if filters:
            selected = [v for v in selected if any(_matches_filter(v, cv) for cv in filters)]
        return selected

    def actual(self, component: str, name: str, evse: int | None = None, connector: int | None = None) -> str | None:
        for v in self.variables:
            if v.component == component and v.name == name and v.evse == evse and v.connector == connector:
                attribute = v.attribute("Actual")
                return attribute.value if attribute is not None else None
        return None

    def set_actual(self, component: str, name: str, value: str, evse: int | None = None, connector: int | None = None) -> None:
        """The station itself changes a value (availability, firmware version...)."""
        for v in self.variables:
            if v.component == component and v.name == name and v.evse == evse and v.connector == connector:
                attribute = v.attribute("Actual")
                if attribute is not None:
                    attribute.value = value

    # --- 1.6 ---------------------------------------------------------------------------
    def configuration(self, keys: list[str] | None) -> tuple[list[dict[str, Any]], list[str]]:
        """1.6 GetConfiguration: (configuration_key entries, unknown keys)."""
        by_key = {v.key16: v for v in self.variables if v.key16 is not None}
        wanted = keys if keys else list(by_key)
        known: list[dict[str, Any]] = []
        unknown: list[str] = []
        for k in wanted:
            v = by_key.get(k)
            attribute = v.attribute("Actual") if v is not None else None
            if v is None or attribute is None:
                unknown.append(k)
            else:
                known.append({"key": k, "readonly": attribute.mutability == "ReadOnly", "value": attribute.value})
        return known, unknown

    def change_configuration(self, key: str, value: str) -> str:
        """1.6 ChangeConfiguration: Accepted | Rejected | NotSupported."""
        v = next((x for x in self.variables if x.key16 == key), None)
        attribute = v.attribute("Actual") if v is not None else None
        if v is None or attribute is None:
            return "NotSupported"
        if attribute.mutability == "ReadOnly" or not v.check(value):
            return "Rejected"
        attribute.value = value
        return "Accepted"


def _actual(value: str, mutability: str = "ReadOnly") -> list[Attribute]:
    return [Attribute("Actual", value, mutability)]


def default_model(
    station_id: str, connectors: int = 1, power_w: float = 11_000.0, firmware_version: str = "1.0.0",
    items_per_report_part: int = 4,
) -> DeviceModel:
    """The inventory of a one-EVSE AC charger with `connectors` connectors."""
    availability = "Available,Occupied,Reserved,Unavailable,Faulted"
    evse_max = Decimal(str(power_w))
    v: list[Variable] = [
        Variable("ChargingStation", "Available", _actual("true"), "boolean"),
        Variable("ChargingStation", "AvailabilityState", _actual("Available"), "OptionList", values_list=availability),
        Variable("ChargingStation", "Model", _actual("SimCharger"), "string"),
        Variable("ChargingStation", "VendorName", _actual("CSMS-Sim"), "string"),
        Variable("ChargingStation", "SupplyPhases", _actual("3"), "integer"),
        Variable("EVSE", "Available", _actual("true"), "boolean", evse=1),
        Variable("EVSE", "AvailabilityState", _actual("Available"), "OptionList", values_list=availability, evse=1),
        Variable(
            "EVSE", "Power", [Attribute("Actual", "0", "ReadOnly"), Attribute("MaxSet", str(int(power_w)), "ReadOnly")],
            "decimal", unit="W", max_limit=evse_max, evse=1,
        ),
    ]
    for c in range(1, connectors + 1):
        v += [
            Variable("Connector", "Available", _actual("true"), "boolean", evse=1, connector=c),
            Variable("Connector", "AvailabilityState", _actual("Available"), "OptionList", values_list=availability, evse=1, connector=c),
            Variable("Connector", "ConnectorType", _actual("cType2"), "string", evse=1, connector=c),
        ]
    v += [
        Variable("OCPPCommCtrlr", "HeartbeatInterval", _actual("300", "ReadWrite"), "integer", unit="s",
                 min_limit=Decimal(1), key16="HeartbeatInterval"),
        Variable("OCPPCommCtrlr", "NetworkConfigurationPriority", _actual("1", "ReadWrite"), "SequenceList"),
        Variable("OCPPCommCtrlr", "NetworkProfileConnectionAttempts", _actual("3", "ReadWrite"), "integer"),
        Variable("OCPPCommCtrlr", "OfflineThreshold", _actual("600", "ReadWrite"), "integer", unit="s"),
        Variable("SampledDataCtrlr", "Enabled", _actual("true", "ReadWrite"), "boolean"),
        Variable("SampledDataCtrlr", "TxUpdatedInterval", _actual("60", "ReadWrite"), "integer", unit="s",
                 min_limit=Decimal(0), key16="MeterValueSampleInterval"),
        Variable("TxCtrlr", "EVConnectionTimeOut", _actual("120", "ReadWrite"), "integer", unit="s",
                 min_limit=Decimal(0), key16="ConnectionTimeOut"),
        Variable("AuthCtrlr", "Enabled", _actual("true", "ReadWrite"), "boolean"),
        Variable("AuthCtrlr", "AuthorizeRemoteStart", _actual("true", "ReadWrite"), "boolean", key16="AuthorizeRemoteTxRequests"),
        Variable("SecurityCtrlr", "SecurityProfile", _actual("1"), "integer", key16="SecurityProfile"),
        Variable("SecurityCtrlr", "OrganizationName", _actual("CSMS-Sim", "ReadWrite"), "string"),
        Variable("DeviceDataCtrlr", "ItemsPerMessage", _actual(str(items_per_report_part)), "integer", instance="GetReport"),
        Variable("DeviceDataCtrlr", "ItemsPerMessage", _actual("16"), "integer", instance="GetVariables",
                 key16="GetConfigurationMaxKeys"),
        Variable("DeviceDataCtrlr", "BytesPerMessage", _actual("65000"), "integer", instance="GetReport"),
        Variable("FirmwareCtrlr", "FirmwareVersion", _actual(firmware_version), "string"),
        # 1.6-only keys (no 2.0.1 variable says the same thing)
        Variable("ChargingStation", "NumberOfConnectors", _actual(str(connectors)), "integer",
                 key16="NumberOfConnectors", only16=True),
        Variable("ChargingStation", "SupportedFeatureProfiles",
                 _actual("Core,FirmwareManagement,RemoteTrigger,SmartCharging"), "string",
                 key16="SupportedFeatureProfiles", only16=True),
    ]
    return DeviceModel(v)


def report_data(variables: Iterable[Variable]) -> list[dict[str, Any]]:
    return [v.report_json() for v in variables]


def chunks(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    size = max(1, size)
    for i in range(0, len(items), size):
        yield items[i:i + size]
