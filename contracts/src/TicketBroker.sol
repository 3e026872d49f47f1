// SPDX-License-Identifier: MIT
// Test stand-in for Livepeer's TicketBroker: sender deposits and reserves,
// and redemption of winning tickets with the real hash, signature and win
// checks, paying the face value to the recipient.
pragma solidity ^0.8.20;

contract TicketBroker {
    struct Ticket {
        address recipient;
        address sender;
        uint256 faceValue;
        uint256 winProb;
        uint256 senderNonce;
        bytes32 recipientRandHash;
        bytes auxData;
    }

    struct Sender {
        uint256 deposit;
        uint256 withdrawRound;
    }

    struct ReserveInfo {
        uint256 fundsRemaining;
        uint256 claimedInCurrentRound;
    }

    mapping(address => Sender) internal senders;
    mapping(address => uint256) internal reserves;
    mapping(bytes32 => bool) public usedTickets;

    event WinningTicketRedeemed(address indexed sender, address indexed recipient, uint256 faceValue, uint256 winProb, uint256 senderNonce, uint256 recipientRand, bytes auxData);

    function fundDepositAndReserve(uint256 depositAmount, uint256 reserveAmount) external payable {
        require(msg.value == depositAmount + reserveAmount, "msg.value does not equal sum of deposit amount and reserve amount");
        senders[msg.sender].deposit += depositAmount;
        reserves[msg.sender] += reserveAmount;
    }

    function getSenderInfo(address sender) external view returns (Sender memory, ReserveInfo memory) {
        return (senders[sender], ReserveInfo(reserves[sender], 0));
    }

    function redeemWinningTicket(Ticket memory ticket, bytes memory sig, uint256 recipientRand) public {
        bytes32 ticketHash = keccak256(abi.encodePacked(
            ticket.recipient, ticket.sender, ticket.faceValue, ticket.winProb,
            ticket.senderNonce, ticket.recipientRandHash, ticket.auxData));
        require(ticket.recipient != address(0), "ticket recipient is null address");
        require(ticket.sender != address(0), "ticket sender is null address");
        require(keccak256(abi.encodePacked(recipientRand)) == ticket.recipientRandHash, "recipientRand does not match recipientRandHash");
        require(!usedTickets[ticketHash], "ticket is used");
        require(recover(ticketHash, sig) == ticket.sender, "invalid signature over ticket hash");
        require(uint256(keccak256(abi.encodePacked(sig, recipientRand))) < ticket.winProb, "ticket did not win");
        usedTickets[ticketHash] = true;

        uint256 amount = ticket.faceValue;
        Sender storage s = senders[ticket.sender];
        if (s.deposit >= amount) {
            s.deposit -= amount;
        } else {
            uint256 fromReserve = amount - s.deposit;
            require(reserves[ticket.sender] >= fromReserve, "sender funds insufficient");
            s.deposit = 0;
            reserves[ticket.sender] -= fromReserve;
        }
        (bool ok, ) = payable(ticket.recipient).call{value: amount}("");
        require(ok, "transfer failed");
        emit WinningTicketRedeemed(ticket.sender, ticket.recipient, ticket.faceValue, ticket.winProb, ticket.senderNonce, recipientRand, ticket.auxData);
    }

    // recover checks a personal-sign signature: 65 bytes R‖S‖V, V 27/28, low S.
    function recover(bytes32 hash, bytes memory sig) internal pure returns (address) {
        require(sig.length == 65, "invalid signature length");
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly {
            r := mload(add(sig, 32))
            s := mload(add(sig, 64))
            v := byte(0, mload(add(sig, 96)))
        }
        require(uint256(s) <= 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0, "invalid signature s value");
        require(v == 27 || v == 28, "invalid signature v value");
        bytes32 prefixed = keccak256(abi.encodePacked("\x19Ethereum Signed Message:\n32", hash));
        return ecrecover(prefixed, v, r, s);
    }
}
