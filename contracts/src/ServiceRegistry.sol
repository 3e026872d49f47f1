// SPDX-License-Identifier: MIT
// Test stand-in for Livepeer's ServiceRegistry (and the AI service registry,
// which has the same ABI).
pragma solidity ^0.8.20;

contract ServiceRegistry {
    mapping(address => string) internal uris;

    event ServiceURIUpdate(address indexed addr, string serviceURI);

    function setServiceURI(string calldata serviceURI) external {
        uris[msg.sender] = serviceURI;
        emit ServiceURIUpdate(msg.sender, serviceURI);
    }

    function getServiceURI(address addr) external view returns (string memory) { return uris[addr]; }
}
